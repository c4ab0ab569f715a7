"""The speed comparisons (a), (b) and (d) of `make gpu-check`, each a new path measured against
today's in the same run on the same real-length rows: (a) the 9B student scored with eager and
flex attention, (b) the student trained padded and packed, (d) the NF4 teacher scored and trained
with `kbit_upcast` on and off. Each takes its model, sizes and a report callback, so that the
test suite runs them on the CPU at tiny sizes and the flex warm-up replays their calls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from arena_distill.gpu.speed import predict_speed, train_speed
from arena_distill.gpu.workload import (
    PREDICT_ROWS,
    PRESET_LORA,
    ROWS_PER_STEP,
    TRAIN_STEPS,
    flex_graphs,
    preset_settings,
    real_rows,
    save_random,
    scratch_dir,
    set_attention,
)
from arena_distill.modeling import flops
from arena_distill.modeling.inference import predict_logits
from arena_distill.modeling.models import add_lora, load_model
from arena_distill.training.config import TrainConfig

CASE_SECONDS = 12.0
"""Seconds one case of a comparison needs at least; with less left it is not started."""


@dataclass(frozen=True)
class Case:
    """One way of training the student: its attention and micro-batching (`TrainConfig` keys).
    `may_not_fit`: running out of memory is a finding (a note), not a failure."""

    name: str
    attn: str
    settings: Mapping[str, Any]
    may_not_fit: bool = False


def student_cases() -> tuple[Case, ...]:
    tokens = preset_settings()["student_tokens"]
    return (
        Case("padded eager, micro-batches of 2 (today)", "eager", {"micro_batch_size": 2}),
        Case(f"packed flex, {tokens:,} tokens (the preset)", "flex_attention", {"packing": True, "micro_batch_tokens": tokens}),
        Case(f"packed eager, {tokens:,} tokens", "eager", {"packing": True, "micro_batch_tokens": tokens}, may_not_fit=True),
        Case(
            f"packed flex, {2 * tokens:,} tokens", "flex_attention", {"packing": True, "micro_batch_tokens": 2 * tokens}, may_not_fit=True
        ),
    )


Emit = Callable[[str, dict[str, Any]], None]


def student_prediction(
    bench: dict[str, Any],
    model: torch.nn.Module,
    peak: float | None,
    emit: Emit,
    left: Callable[[], float],
    lengths: Sequence[int],
    attentions: Sequence[str] = ("eager", "flex_attention"),
    rows: int = PREDICT_ROWS,
) -> None:
    """(a) The same real-length rows scored with each attention at each max length; a later
    attention's logits are compared with the first's."""
    shape = flops.Shape.of(model.config.to_dict())
    for max_length in lengths:
        sequences = real_rows(rows, max_length, model.config.vocab_size, seed=max_length)
        logits: dict[str, np.ndarray | None] = {}
        for attn in attentions:
            entry: dict[str, Any] = {"attn": attn, "max_length": max_length}
            if left() < CASE_SECONDS:
                entry["note"] = "not measured (out of time)"
            else:
                set_attention(model, attn)
                found, logits[attn] = predict_speed(model, shape, sequences, peak, preset_settings()["max_tokens"])
                entry.update(found)
                if attn.startswith("flex"):
                    entry["flex_graphs"] = flex_graphs()
                if attn != attentions[0] and logits.get(attentions[0]) is not None and logits[attn] is not None:
                    entry["max_abs_logit_diff"] = float(np.abs(logits[attn] - logits[attentions[0]]).max())
            bench["student_predict"].append(entry)
            emit("student_predict", entry)


def student_training(
    bench: dict[str, Any],
    model: torch.nn.Module,
    peak: float | None,
    emit: Emit,
    left: Callable[[], float],
    workdir: Path,
    cases: Sequence[Case],
    max_length: int,
    steps: int = TRAIN_STEPS,
) -> None:
    """(b) The same global batches of real-length rows (a warm-up step, then `steps` timed) trained in each way of `cases`."""
    shape = flops.Shape.of(model.config.to_dict())
    sequences = real_rows(ROWS_PER_STEP * (steps + 1), max_length, model.config.vocab_size, seed=1)
    for number, case in enumerate(cases):
        entry: dict[str, Any] = {"case": case.name, "attn": case.attn, "packing": False, **case.settings}
        if left() < CASE_SECONDS:
            entry["note"] = "not measured (out of time)"
        else:
            set_attention(model, case.attn)
            config = TrainConfig(learning_rate=5e-5, batch_size=ROWS_PER_STEP, seed=0, **case.settings)
            entry.update(train_speed(model, shape, sequences, config, peak, workdir / f"student-{number}"))
            if case.attn.startswith("flex"):
                entry["flex_graphs"] = flex_graphs()
            if case.may_not_fit and "OutOfMemoryError" in entry.get("error", ""):
                entry["note"] = "does not fit in the GPU's memory"
                del entry["error"]
        bench["student_train"].append(entry)
        emit("student_train", entry)


def teacher_comparison(
    bench: dict[str, Any],
    device: torch.device,
    dtype: torch.dtype,
    config: Mapping[str, Any],
    layers: int,
    peak: float | None,
    emit: Emit,
    workdir: Path,
    max_length: int,
    tokens: int,
    rows: int = PREDICT_ROWS,
    steps: int = TRAIN_STEPS,
) -> None:
    """(d) A Llama-shaped stack cut to `layers` layers, NF4 through the project's `load_model`,
    loaded twice: scoring at `max_length`; the logits of `kbit_upcast` on and off before any step
    (fresh LoRA, B = 0: the same weights); then QLoRA training in packs of `tokens`, SDPA and
    checkpointing (the preset's teachers), with each."""
    shape = flops.Shape.of({**config, "num_hidden_layers": layers})
    with scratch_dir() as tmp:
        save_random(config, "llama", Path(tmp), layers, device)
        bases = {
            upcast: load_model(tmp, pad_token_id=0, seed=0, dtype=dtype, load_in_bits=4, device=device, attn_implementation="sdpa")
            for upcast in (True, False)
        }
    vocab, max_tokens = config["vocab_size"], preset_settings()["max_tokens"]
    entry, _ = predict_speed(bases[True], shape, real_rows(rows, max_length, vocab, seed=2), peak, max_tokens)
    entry.update(layers=layers, max_length=max_length)
    bench["teacher_predict"].append(entry)
    emit("teacher_predict", entry)
    models = {}
    for upcast, base in bases.items():
        torch.manual_seed(0)
        models[upcast] = add_lora(base, PRESET_LORA, gradient_checkpointing=True, kbit_upcast=upcast)
    scored = real_rows(16, max_length, vocab, seed=4)
    logits = {
        upcast: predict_logits(model, scored, pad_id=0, max_tokens=max_tokens, bf16=dtype == torch.bfloat16)
        for upcast, model in models.items()
    }
    bench["teacher_logit_diff"] = float(np.abs(logits[True] - logits[False]).max())
    sequences = real_rows(ROWS_PER_STEP * (steps + 1), max_length, vocab, seed=3)
    train = TrainConfig(learning_rate=1e-5, batch_size=ROWS_PER_STEP, packing=True, micro_batch_tokens=tokens, seed=0)
    for upcast, model in models.items():
        entry = {
            "layers": layers,
            "kbit_upcast": upcast,
            "micro_batch_tokens": tokens,
            **train_speed(model, shape, sequences, train, peak, workdir / f"teacher-{upcast}"),
        }
        bench["teacher_train"].append(entry)
        emit("teacher_train", entry)
