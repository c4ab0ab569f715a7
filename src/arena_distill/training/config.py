"""The settings of one training run and the batch plans they choose.

`TrainConfig` is a config block plus the model's own keys, its `select` and `batching`
checked when it is built. The batch plans decide which rows make each optimizer step (a
pure function of seed and epoch, so a resumed run replays them), and `micro_batches` how
one process's rows of a step become forward passes, padded or packed: the loop, the
benchmarks and the GPU check all split batches through it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from arena_distill.errors import ConfigError
from arena_distill.modeling.batching import length_grouped_batches, packed_batches, random_batches

BATCH_PLANS = {"length_grouped": length_grouped_batches, "random": random_batches}


@dataclass(frozen=True)
class TrainConfig:
    """Optimization settings of one training run (a config block plus the model's own keys)."""

    learning_rate: float
    epochs: float = 1.0
    max_steps: int | None = None
    """Optimizer steps of the run; when set it replaces `epochs` (the seed team's 300-step
    teachers), and the cosine schedule spans exactly these steps unless `schedule_epochs` is longer."""
    schedule_epochs: float | None = None
    """Length of the cosine schedule in epochs; None = `epochs`. The original's teachers stop
    after 1 epoch of a 2-epoch schedule (the LR is still at half its peak)."""
    select: str = "best"
    """Weights the run ends with: `best` validation loss or `last` step."""
    batch_size: int = 32
    micro_batch_size: int = 32
    packing: bool = False
    """Each micro-batch one sequence of packed rows under `micro_batch_tokens` (no padding);
    the same rows per optimizer step either way."""
    micro_batch_tokens: int = 4096
    """Tokens of one packed micro-batch (replaces `micro_batch_size` when packing)."""
    warmup_ratio: float = 0.05
    warmup_steps: int | None = None
    """Warmup in optimizer steps; when set it replaces `warmup_ratio` (the original: 100)."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    batching: str = "length_grouped"
    """`length_grouped` (similar lengths per batch, less padding) or `random` (the original)."""
    eval_every: int = 100
    log_every: int = 0
    """Steps between progress lines (loss, rate, ETA) and points of the learning curve in
    `metrics.json`; 0 = every tenth of the run."""
    eval_max_tokens: int = 65536
    precision: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "adam_betas", tuple(self.adam_betas))
        if self.select not in ("best", "last"):
            raise ConfigError(f"select must be best or last, got {self.select!r}", key="select")
        if self.batching not in BATCH_PLANS:
            raise ConfigError(f"batching must be one of {sorted(BATCH_PLANS)}, got {self.batching!r}", key="batching")

    def schedule(self, steps_per_epoch: int) -> tuple[int, int, int]:
        """(steps to run, steps of the cosine schedule, warmup steps)."""
        run = self.max_steps or max(1, math.ceil(self.epochs * steps_per_epoch))
        scheduled = self.schedule_epochs or (None if self.max_steps else self.epochs)
        length = max(run, math.ceil(scheduled * steps_per_epoch)) if scheduled else run
        warmup = self.warmup_steps if self.warmup_steps is not None else round(self.warmup_ratio * length)
        return run, length, min(warmup, length)

    def validation_share(self, steps_per_epoch: int, train_tokens: float, val_tokens: float) -> float:
        """Compute of the run's validations as a share of its training compute.

        A validation is a forward pass over `val_tokens` (2 FLOPs per parameter and token);
        training costs 6 per trained token (forward and backward), `train_tokens` per epoch.
        Validating every 100 steps, as the original did, costs about 60 % on top of training
        at the competition's fold sizes; `eval_every` sets the cadence.
        """
        run, _, _ = self.schedule(steps_per_epoch)
        validations = math.ceil(run / self.eval_every)
        return validations * 2 * val_tokens / (6 * run / steps_per_epoch * train_tokens)


def micro_batches(rows: list[int], lengths: np.ndarray, config: TrainConfig) -> list[list[int]]:
    """One process's rows of a step as forward passes: `micro_batch_size` rows in order, or
    packs of at most `micro_batch_tokens` tokens."""
    if config.packing:
        return [[rows[i] for i in pack] for pack in packed_batches(lengths[rows], config.micro_batch_tokens)]
    return [rows[start : start + config.micro_batch_size] for start in range(0, len(rows), config.micro_batch_size)]
