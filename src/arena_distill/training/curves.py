"""Live learning curves: TensorBoard event files a training run appends to while it runs.

A teacher fold trains for hours and its log gets ten progress lines; `tensorboard --logdir
results/tensorboard` on a login node shows every fold's curves as they grow. The run writes
the training loss (the mean since the last point), the learning rate and tokens/s every
`log_every` steps or every minute, whichever comes first, and the validation metrics at each
validation. Only the main process writes; a resumed run appends a new event file to the same
directory and TensorBoard joins them by step.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

EVERY_SECONDS = 60.0
"""At least one training point a minute, however long a step takes."""


class Curves:
    """TensorBoard scalars of one run; writes nothing without a directory."""

    def __init__(self, logdir: str | Path | None, every_steps: int, *, fresh: bool, every_seconds: float = EVERY_SECONDS):
        """`fresh`: the run starts from step 0, so curves of an earlier attempt are removed (a
        resumed run appends to them)."""
        self.writer = None
        self.every_steps = every_steps
        self.every_seconds = every_seconds
        self.last_write = time.monotonic()
        self.losses: list[float] = []
        if logdir is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:  # the GPU check's borrowed machine has no tensorboard
            log.warning("no TensorBoard curves: %s (install the project's requirements.lock)", error)
            return
        if fresh:
            shutil.rmtree(logdir, ignore_errors=True)
        self.writer = SummaryWriter(str(logdir))

    def step(self, step: int, loss: float, learning_rate: float, tokens_per_second: float, last: bool = False) -> None:
        """Record one optimizer step; write a point when `every_steps` or `every_seconds` is reached."""
        self.losses.append(loss)
        due = step % self.every_steps == 0 or last or time.monotonic() - self.last_write >= self.every_seconds
        if self.writer is None or not due:
            return
        self.writer.add_scalar("train/loss", sum(self.losses) / len(self.losses), step)
        self.writer.add_scalar("train/learning_rate", learning_rate, step)
        self.writer.add_scalar("train/tokens_per_second", tokens_per_second, step)
        self.writer.flush()
        self.losses, self.last_write = [], time.monotonic()

    def validation(self, step: int, metrics: Mapping[str, float]) -> None:
        """The validation metrics of `step` (loss, accuracy, ...) as `val/<name>`."""
        if self.writer is None:
            return
        for name, value in metrics.items():
            self.writer.add_scalar(f"val/{name}", value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
