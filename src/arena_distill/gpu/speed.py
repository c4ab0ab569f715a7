"""How the benchmarks of `make gpu-check` time a model: wall seconds and peak memory of a block,
and the scoring and LoRA-training speed of the project's own `predict_logits` and
`optimizer_step` on given rows, with tokens/s and MFU (real tokens over the tokens the forward
passes compute, so padding shows). A first call is timed apart (a compile where there was one).
Every comparison and the GPTQ benchmark measure through these, so they stand on their own.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from arena_distill.modeling import flops
from arena_distill.modeling.batching import token_budget_batches
from arena_distill.modeling.inference import predict_logits
from arena_distill.modeling.parallel import Parallel
from arena_distill.training.config import TrainConfig, micro_batches
from arena_distill.training.loop import optimizer_step, start_run
from arena_distill.training.tasks import ClassificationTask, Examples


@contextlib.contextmanager
def measured(entry: dict[str, Any], device: torch.device) -> Iterator[None]:
    """Wall seconds (on a GPU also peak memory) of a block into `entry`; an error is recorded, not raised."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    started = time.perf_counter()
    try:
        yield
        if cuda:
            torch.cuda.synchronize()
    except Exception as error:  # one failed measurement must not stop the others
        entry["error"] = f"{type(error).__name__}: {str(error)[:300]}"
    entry["seconds"] = time.perf_counter() - started
    if cuda:
        entry["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30


def device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def first_rows(lengths: Sequence[int], max_tokens: int) -> list[int]:
    """The rows of the first, second and last token-budgeted batch: a first call on them meets
    every shape class of the whole plan (and compiles there)."""
    batches = token_budget_batches(lengths, max_tokens)
    return sorted({i for batch in (batches[0], batches[min(1, len(batches) - 1)], batches[-1]) for i in batch})


def predict_speed(
    model: torch.nn.Module, shape: flops.Shape, sequences: list[list[int]], peak: float | None, max_tokens: int, repeats: int = 1
) -> tuple[dict[str, Any], np.ndarray | None]:
    """Scoring tokens/s of `sequences` through `predict_logits` in token-budgeted batches, after
    a first call on `first_rows`; returns the entry and the logits."""
    pad_id = model.config.pad_token_id or 0
    lengths = [len(s) for s in sequences]
    batches = token_budget_batches(lengths, max_tokens)
    entry: dict[str, Any] = {
        "rows": len(sequences),
        "real_tokens": sum(lengths),
        "computed_tokens": sum(len(b) * max(lengths[i] for i in b) for b in batches),
    }
    with measured(entry, device_of(model)):
        predict_logits(model, [sequences[i] for i in first_rows(lengths, max_tokens)], pad_id=pad_id, max_tokens=max_tokens)
    entry["first_call_s"] = entry.pop("seconds")
    logits = None
    if "error" not in entry:
        with measured(entry, device_of(model)):
            for _ in range(repeats):
                logits = predict_logits(model, sequences, pad_id=pad_id, max_tokens=max_tokens)
            if not np.isfinite(logits).all():
                raise RuntimeError("non-finite logits")
    if "error" not in entry:
        entry["tokens_per_s"] = repeats * entry["real_tokens"] / entry["seconds"]
        entry["mfu"] = flops.mfu(repeats * flops.rows_flops(lengths, shape.forward_flops), entry["seconds"], peak)
    return entry, (logits if "error" not in entry else None)


def train_speed(
    model: torch.nn.Module, shape: flops.Shape, sequences: list[list[int]], config: TrainConfig, peak: float | None, workdir: Path
) -> dict[str, Any]:
    """LoRA training tokens/s of the project's optimizer step over consecutive `config.batch_size`
    rows, after one warm-up step: real tokens over the tokens its forward passes compute."""
    examples = Examples(sequences, {"label": np.arange(len(sequences)) % 3})
    lengths = examples.lengths
    steps = [list(range(start, start + config.batch_size)) for start in range(0, len(sequences), config.batch_size)]
    passes = [micro for rows in steps[1:] for micro in micro_batches(rows, lengths, config)]
    computed = sum(lengths[p].sum() if config.packing else len(p) * lengths[p].max() for p in passes)
    entry: dict[str, Any] = {
        "real_tokens": int(sum(lengths[rows].sum() for rows in steps[1:])),
        "computed_tokens": int(computed),
        "passes": len(passes),
    }
    run = start_run(
        model, ClassificationTask(), examples, examples, config, pad_id=0, checkpoint_dir=workdir, fingerprint="bench", parallel=Parallel()
    )
    model.train()  # dropout (and checkpointing where on) act in training mode only
    with measured(entry, device_of(model)):
        optimizer_step(run, steps[0])
    entry["first_call_s"] = entry.pop("seconds")
    if "error" not in entry:
        with measured(entry, device_of(model)):
            losses = [optimizer_step(run, rows) for rows in steps[1:]]
            if not all(np.isfinite(losses)):
                raise RuntimeError(f"non-finite loss {losses}")
    run.optimizer.zero_grad(set_to_none=True)
    if "error" not in entry:
        entry["tokens_per_s"] = entry["real_tokens"] / entry["seconds"]
        credited = flops.rows_flops(lengths[len(steps[0]) :], shape.lora_train_flops)
        entry["mfu"] = flops.mfu(credited, entry["seconds"], peak)
    return entry
