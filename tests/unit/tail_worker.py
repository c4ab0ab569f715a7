"""A post-pretraining job whose rank 0 takes longer to write than the group's timeout.

Run under torchrun by test_parallel: `tail_worker.py <model dir> <pairs.parquet> <out dir> <timeout s>`.
"""

import sys
import time
from datetime import timedelta

import torch

from arena_distill.modeling import parallel
from arena_distill.training import stages

model_dir, pairs, out, timeout = sys.argv[1:]
parallel.GROUP_TIMEOUT = timedelta(seconds=float(timeout))
write_parquet = stages.write_parquet


def slow_write(*args, **kwargs):
    """Rank 0's writes (a 70B adapter, a large logits table) outlast the timeout."""
    time.sleep(2.5 * float(timeout))
    write_parquet(*args, **kwargs)


stages.write_parquet = slow_write
torch.set_num_threads(1)
stages.post_pretrain(
    base={"path": model_dir},
    pairs=pairs,
    spec={"seed": 0, "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}},
    settings={"dev_rows": 16, "learning_rate": 1e-3, "epochs": 1, "batch_size": 16},
    training={"micro_batch_size": 8, "eval_every": 1000, "swap_augment": False},
    text={"prompt_words": 64, "response_words": 64, "prompt_tokens": 32, "train_max_length": 96},
    outputs={
        "adapter": f"{out}/adapter",
        "metrics": f"{out}/metrics.json",
        "val_logits": f"{out}/dev_logits.parquet",
        "checkpoint_dir": f"{out}/checkpoints",
    },
)
