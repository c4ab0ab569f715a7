"""Trains the synthetic task for a few steps; run alone or under torchrun by test_training."""

import sys

import torch
from safetensors.torch import save_file

from arena_distill.modeling.parallel import Parallel
from arena_distill.training.checkpoints import trainable_state
from arena_distill.training.config import TrainConfig
from arena_distill.training.loop import train
from arena_distill.training.tasks import ClassificationTask
from tests.unit.synthetic import PAD, marker_pairs, tiny_classifier

out, checkpoints = sys.argv[1], sys.argv[2]
parallel = Parallel.from_env()
torch.set_num_threads(1)
model = tiny_classifier(seed=0)
config = TrainConfig(learning_rate=3e-3, epochs=1, batch_size=16, micro_batch_size=4, eval_every=10, seed=0)
train(
    model,
    ClassificationTask(),
    marker_pairs(160, seed=1),
    marker_pairs(40, seed=2),
    config,
    pad_id=PAD,
    checkpoint_dir=checkpoints,
    fingerprint="ddp",
    parallel=parallel,
)
if parallel.is_main:
    save_file(trainable_state(model), out)
