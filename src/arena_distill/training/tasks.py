"""What a training run learns from and how it is judged: the examples, the tasks, the scoring.

`Examples` are token rows with their per-row targets, batched padded or packed; a task
(`Task`) turns such a batch into a summed loss (`ClassificationTask` here, the
distillation task in `arena_distill.student.loss`). Every task trains the same 3-way
classifier, so validation is the classifier's for all of them: `score` computes the logits
of every row across processes and `classifier_metrics` their log loss and accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from arena_distill.modeling.batching import token_budget_batches
from arena_distill.modeling.packing import forward_logits, model_inputs
from arena_distill.modeling.parallel import Parallel
from arena_distill.scoring.metrics import accuracy, logits_log_loss


@dataclass
class Examples:
    """Token sequences and per-row targets (`targets[name][i]` belongs to `ids[i]`)."""

    ids: list[list[int]]
    targets: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def lengths(self) -> np.ndarray:
        """Tokens per row, counted once: every step's micro-batches and every epoch's plan read them."""
        return np.fromiter((len(seq) for seq in self.ids), dtype=np.int64, count=len(self.ids))

    def batch(self, rows: list[int], pad_id: int, device: torch.device, packed: bool = False) -> dict[str, torch.Tensor]:
        """The model inputs of `rows` and their targets: right-padded rows, or one pack
        (`arena_distill.modeling.packing`) whose logits come out in the order of `rows` all the same."""
        batch = model_inputs([self.ids[i] for i in rows], pad_id, device, packed)
        for name, values in self.targets.items():
            batch[name] = torch.as_tensor(values[rows]).to(device)
        return batch


class Task(Protocol):
    """What a training stage computes from a batch; the loop does the rest. Every task trains
    the 3-way classifier, so evaluation is the classifier's: log loss against `label`."""

    def loss(self, model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The loss summed (not averaged) over the batch's rows."""


class ClassificationTask:
    """Cross-entropy of the 3-way head against `label`."""

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = label_smoothing

    def loss(self, model, batch):
        logits = forward_logits(model, batch)
        return F.cross_entropy(logits, batch["label"], reduction="sum", label_smoothing=self.label_smoothing)


def score(
    model: torch.nn.Module,
    examples: Examples,
    pad_id: int,
    device: torch.device,
    parallel: Parallel,
    max_tokens: int,
    bf16: bool,
) -> np.ndarray:
    """Logits (rows × labels, float32) of every row of `examples`, on every process.

    Each process scores every `world`-th row in length-sorted, token-budgeted batches (sorted
    rows pad almost nothing, so scoring does not pack); one sum then gathers the rows (each
    row is zero on all processes but its own), so no process scores alone while the others wait.
    """
    rows = np.arange(parallel.rank, len(examples), parallel.world)
    logits = torch.zeros((len(examples), model.config.num_labels), dtype=torch.float32)
    was_training = model.training
    model.eval()
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for batch_rows in token_budget_batches(examples.lengths[rows], max_tokens):
            chosen = rows[batch_rows]
            logits[chosen] = forward_logits(model, examples.batch(chosen.tolist(), pad_id, device)).cpu()
    model.train(was_training)
    return parallel.sum(logits).cpu().numpy()


def classifier_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Validation loss (log loss) and accuracy of a classifier's logits."""
    return {"loss": logits_log_loss(logits, labels), "accuracy": accuracy(logits, labels)}
