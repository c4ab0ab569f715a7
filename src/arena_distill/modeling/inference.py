"""Scoring token sequences with a classifier: length-sorted, token-budgeted, no grad."""

from __future__ import annotations

import numpy as np
import torch

from arena_distill.logs import progress
from arena_distill.modeling.batching import token_budget_batches
from arena_distill.modeling.packing import forward_logits, model_inputs


def predict_logits(
    model: torch.nn.Module,
    sequences: list[list[int]],
    *,
    pad_id: int,
    max_tokens: int,
    bf16: bool = False,
    desc: str = "score",
) -> np.ndarray:
    """Raw logits (rows × labels, float32) of `sequences`, in input order.

    Rows are sorted by length and batched under `max_tokens` (rows × longest), so short
    rows are not padded to the longest of the whole set. Right padding with pad = EOS
    leaves each row's logits unchanged by its batch mates up to float rounding.
    """
    device = next(model.parameters()).device
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    out = np.zeros((len(sequences), model.config.num_labels), dtype=np.float32)
    model.eval()
    batches = token_budget_batches(lengths, max_tokens)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for rows in progress(batches, desc=desc):
            out[rows] = forward_logits(model, model_inputs([sequences[i] for i in rows], pad_id, device)).cpu().numpy()
    return out
