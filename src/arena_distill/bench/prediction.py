"""Prediction benchmarks: `predict_logits` (length-sorted, token-budgeted batches) against a
per-row loop padded to the max length, at a wider budget and in bf16 autocast, with the
probability differences, the share of scored tokens that are not padding, and the compute
it reaches against one bare matmul of the model's MLP shape.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from scipy.special import softmax
from torch.utils.flop_counter import FlopCounterMode

from arena_distill.bench.summary import Result
from arena_distill.bench.tiny_default import Setup, classifier
from arena_distill.modeling.batching import pad_right, token_budget_batches
from arena_distill.modeling.inference import predict_logits
from arena_distill.training.tasks import Examples


def prediction_bench(examples: Examples, base: Path, tokenizer, setup: Setup, wide_budget: int = 16384) -> list[Result]:
    """`predict_logits` against one padded row at a time, at identical probabilities; and at
    the default's token budget against a `wide_budget` one."""
    model = classifier(base, tokenizer, None).eval()
    pad = tokenizer.pad_token_id
    max_tokens = setup.max_tokens

    def scored(budget: int) -> tuple[np.ndarray, float]:
        started = time.perf_counter()
        logits = predict_logits(model, examples.ids, pad_id=pad, max_tokens=budget)
        return logits, time.perf_counter() - started

    # Two interleaved rounds, the faster of each kept (as for training): neither budget runs cold.
    (wide, wide_1), (fast, fast_1), (_, wide_2), (_, fast_2) = [scored(b) for _ in range(2) for b in (wide_budget, max_tokens)]
    wide_seconds, fast_seconds = min(wide_1, wide_2), min(fast_1, fast_2)
    naive = np.zeros_like(fast)
    started = time.perf_counter()
    with torch.inference_mode():
        for i, ids in enumerate(examples.ids):
            padded = ids + [pad] * (setup.max_length - len(ids))
            mask = [1] * len(ids) + [0] * (setup.max_length - len(ids))
            naive[i] = model(input_ids=torch.tensor([padded]), attention_mask=torch.tensor([mask])).logits[0].float().numpy()
    naive_seconds = time.perf_counter() - started
    difference = float(np.abs(softmax(fast, axis=1) - softmax(naive, axis=1)).max())
    # bf16 autocast (AMX on recent Xeons): faster, but not at identical probabilities.
    started = time.perf_counter()
    half = predict_logits(model, examples.ids, pad_id=pad, max_tokens=max_tokens, bf16=True)
    half_seconds = time.perf_counter() - started
    half_difference = float(np.abs(softmax(fast, axis=1) - softmax(half, axis=1)).max())
    lengths = examples.lengths
    batches = token_budget_batches(lengths, max_tokens)
    scored = sum(len(batch) * lengths[batch].max() for batch in batches)
    rows = len(examples)
    achieved = sum(forward_flops(model, [examples.ids[i] for i in batch], pad) for batch in batches) / fast_seconds / 1e9
    ceiling = matmul_gflops(max_tokens, setup.sizes["hidden_size"], setup.sizes["intermediate_size"])
    wide_difference = float(np.abs(softmax(fast, axis=1) - softmax(wide, axis=1)).max())
    return [
        Result(
            "prediction: predict_logits",
            rows / fast_seconds,
            "rows/s",
            "per-row loop padded to the max length",
            naive_seconds / fast_seconds,
            f"{max_tokens:,}-token batches; max |probability difference| {difference:.1e}",
        ),
        Result(
            f"prediction: predict_logits, {wide_budget:,}-token batches",
            rows / wide_seconds,
            "rows/s",
            "predict_logits",
            wide_seconds / fast_seconds,
            f"ratio: the default's budget against this one; max |probability difference| {wide_difference:.1e}",
        ),
        Result("prediction: per-row loop padded to the max length", rows / naive_seconds, "rows/s"),
        Result(
            "prediction: predict_logits in bf16 autocast",
            rows / half_seconds,
            "rows/s",
            "per-row loop padded to the max length",
            naive_seconds / half_seconds,
            f"max |probability difference| to float32 {half_difference:.1e}",
        ),
        Result(
            "prediction: non-pad share of the scored tokens",
            float(lengths.sum() / scored),
            "share",
            note=f"{rows} rows, mean {lengths.mean():.0f} tokens, cap {setup.max_length}",
        ),
        Result(
            "prediction: predict_logits compute",
            achieved,
            "GFLOP/s",
            "one bare matmul of the model's MLP shape",
            achieved / ceiling,
            f"the matmul: {ceiling:.0f} GFLOP/s; what batching can still gain",
        ),
    ]


def forward_flops(model, ids: list[list[int]], pad_id: int) -> float:
    """FLOPs of one padded forward pass of these rows, counted by torch's FLOP counter."""
    input_ids, attention_mask = pad_right(ids, pad_id)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(input_ids=input_ids, attention_mask=attention_mask)
    return float(counter.get_total_flops())


def matmul_gflops(rows: int, hidden: int, inner: int, repeats: int = 20) -> float:
    """GFLOP/s of this machine on the largest matmul a scoring batch does: (rows × hidden) @
    (hidden × inner), best of `repeats` — the most a model of these sizes can get from batching."""
    a, b = torch.randn(rows, hidden), torch.randn(hidden, inner)
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * rows * hidden * inner / best / 1e9
