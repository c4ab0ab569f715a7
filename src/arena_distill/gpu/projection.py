"""Wall-time projections of the preset's heavy stages from the MFUs the GPU check measured
(`arena_distill.gpu.benchmarks_phase`): the FLOPs of each stage (`arena_distill.modeling.flops`) over GPUs x peak x
the MFU of the path the preset runs. Pure arithmetic, no GPU.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from arena_distill.export.kaggle_bundle import KAGGLE_LIMIT_HOURS, KAGGLE_TEST_PAIRS
from arena_distill.gpu.tables import ROWS, first_mfu, fmt
from arena_distill.modeling.flops import H100_PEAK, T4_PEAK, Shape, hours

NODE_GPUS = 8
"""GPUs of a training job (the SLURM profile gives post_pretrain, train_teacher and distill_student a node)."""

GEMMA2_9B: dict[str, Any] = {
    "hidden_size": 3584,
    "num_hidden_layers": 42,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 256,
    "intermediate_size": 14336,
    "vocab_size": 256000,
    "attn_logit_softcapping": 50.0,
    "final_logit_softcapping": 30.0,
    "sliding_window": 4096,
    "query_pre_attn_scalar": 256,
    "max_position_embeddings": 8192,
}
LLAMA3_70B: dict[str, Any] = {
    "hidden_size": 8192,
    "num_hidden_layers": 80,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "intermediate_size": 28672,
    "vocab_size": 128256,
    "rope_theta": 500000.0,
    "max_position_embeddings": 8192,
}
QWEN2_72B: dict[str, Any] = {
    "hidden_size": 8192,
    "num_hidden_layers": 80,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "intermediate_size": 29568,
    "vocab_size": 152064,
    "max_position_embeddings": 32768,
}
"""The real models' configs (their architecture keys), for random-init benchmark models."""

ARENA_TRAIN_ROWS = 57_477
EXTRA_ROWS = 33_000
KAGGLE_TEST_TOKENS = 650
TRAIN_TOKENS = 600
"""Mean tokens of a training row at the preset's 1024-token budget (the bundled real rows)."""
POST_PRETRAIN_TOKENS = 100e6
"""The post-pretraining corpus size is not known: its stage is given per 100M tokens."""


@dataclass(frozen=True)
class Measured:
    """MFUs the benchmarks measured (None: not measured)."""

    student_forward: float | None
    student_train: float | None
    teacher_forward: float | None
    teacher_train: float | None


@dataclass(frozen=True)
class Stage:
    """One row of a projection: hours per job (None when an MFU it needs is missing)."""

    name: str
    jobs: int
    hours: float | None
    note: str


def fold_rows(folds: int, swap: bool) -> tuple[int, int]:
    """(training rows, validation rows) of one fold of the real data (training rows with
    their mirrors when `swap`): 1 - 1/folds of the competition rows plus the 33k set."""
    train = round((1 - 1 / folds) * ARENA_TRAIN_ROWS + EXTRA_ROWS)
    return train * (2 if swap else 1), round(ARENA_TRAIN_ROWS / folds)


def evaluations(steps: int, eval_every: int) -> int:
    """Validations of a run: every `eval_every` steps and once at the end."""
    return steps // eval_every + (1 if steps % eval_every else 0)


Mfus = tuple[float | None, float | None]


def scaled(mfu_value: float | None, flops: float, gpus: int, peak: float) -> float | None:
    return None if mfu_value is None else hours(flops, gpus, peak, mfu_value)


def fold_run(name: str, shape: Shape, spec: Mapping[str, Any], preset: Mapping[str, Any], mfus: Mfus) -> Stage:
    """One fold run of a model (`spec`) of the preset on 8 H100s: training plus its validations
    (every `eval_every` steps and at the end, and the mirrored validation rows once), at the
    (training, scoring) MFUs `mfus`."""
    training, folds, gpus, tokens = preset["training"], preset["folds"]["n"], NODE_GPUS, TRAIN_TOKENS
    train_mfu, forward_mfu = mfus
    train_rows, val_rows = fold_rows(folds, training.get("swap_augment", True))
    epochs = spec.get("epochs", 1)
    steps = math.ceil(epochs * math.ceil(train_rows / training["batch_size"]))
    n_evals = evaluations(steps, training["eval_every"])
    train_hours = scaled(train_mfu, shape.lora_train_flops(tokens) * train_rows * epochs * tokens, gpus, H100_PEAK)
    eval_hours = scaled(forward_mfu, shape.forward_flops(tokens) * (n_evals + 1) * val_rows * tokens, gpus, H100_PEAK)
    total = None if train_hours is None or eval_hours is None else train_hours + eval_hours
    note = f"{train_rows:,} rows x {epochs:g} epoch(s), {steps:,} steps; {n_evals} validations of {val_rows:,} rows" + (
        f" ({train_hours:.1f} h training + {eval_hours:.1f} h validation)" if total is not None else ""
    )
    return Stage(name, folds, total, note)


def project(preset: Mapping[str, Any], measured: Measured) -> list[Stage]:
    """Per-job hours of the preset's heavy stages on 8 H100s (one per shard for the teacher
    logits), and of the Kaggle test."""
    folds, gpus = preset["folds"]["n"], NODE_GPUS
    student = Shape.of(GEMMA2_9B)
    teachers = {"llama": Shape.of(LLAMA3_70B), "qwen": Shape.of(QWEN2_72B)}
    stages = []
    for name, shape in teachers.items():
        spec = preset["teachers"].get(name)
        if spec is None:
            continue
        flops = shape.lora_train_flops(TRAIN_TOKENS) * POST_PRETRAIN_TOKENS
        stages.append(
            Stage(
                f"post_pretrain {name}",
                1,
                scaled(measured.teacher_train, flops, gpus, H100_PEAK),
                "per 100M tokens (corpus size not known)",
            )
        )
        stages.append(fold_run(f"train_teacher {name}", shape, spec, preset, (measured.teacher_train, measured.teacher_forward)))
        shards = preset["teacher_logits"]["n_shards"]
        rows = fold_rows(folds, True)[0] / shards
        stages.append(
            Stage(
                f"teacher_logits {name}",
                folds * shards,
                scaled(measured.teacher_forward, shape.forward_flops(TRAIN_TOKENS) * rows * TRAIN_TOKENS, 1, H100_PEAK),
                f"{rows:,.0f} rows (both orders) per shard on 1 GPU",
            )
        )
    stages.append(
        Stage(
            "post_pretrain student",
            1,
            scaled(measured.student_train, student.lora_train_flops(TRAIN_TOKENS) * POST_PRETRAIN_TOKENS, gpus, H100_PEAK),
            "per 100M tokens (corpus size not known)",
        )
    )
    stages.append(fold_run("distill_student", student, preset["student"], preset, (measured.student_train, measured.student_forward)))
    test_flops = student.forward_flops(KAGGLE_TEST_TOKENS) * KAGGLE_TEST_PAIRS * 2 * KAGGLE_TEST_TOKENS
    stages.append(
        Stage(
            "Kaggle test on 1 H100",
            1,
            scaled(measured.student_forward, test_flops, 1, H100_PEAK),
            f"{KAGGLE_TEST_PAIRS:,} pairs x 2 (TTA) x {KAGGLE_TEST_TOKENS} tokens, bf16",
        )
    )
    t4 = scaled(measured.student_forward, test_flops, 2, T4_PEAK)
    verdict = "" if t4 is None else f"; {'within' if t4 <= KAGGLE_LIMIT_HOURS else 'over'} the {KAGGLE_LIMIT_HOURS:g} h limit"
    stages.append(Stage("Kaggle test on 2x T4", 1, t4, f"fp16 peak {T4_PEAK:g} TFLOP/s each at the H100's measured MFU" + verdict))
    return stages


# -- the benchmarks' numbers: which MFU each projected stage runs at, and the report -----------------------------------


def student_path(preset: Mapping[str, Any]) -> dict[str, Any]:
    """How the preset trains the student, in the keys of a `student_train` entry."""
    training = {**preset["training"], **preset["student"].get("training", {})}
    packing = bool(training.get("packing"))
    size = ("micro_batch_tokens", training["micro_batch_tokens"]) if packing else ("micro_batch_size", training["micro_batch_size"])
    return {"attn": preset["student"].get("attn_implementation") or "eager", "packing": packing, size[0]: size[1]}


TODAY_STUDENT = {"attn": "eager", "packing": False, "micro_batch_size": 2}
"""The student's training before packing and flex: eager attention, padded micro-batches of 2 rows."""


def measured_mfus(bench: Mapping[str, Any], preset: Mapping[str, Any]) -> tuple[Measured, dict[str, str]]:
    """The MFU each projected stage runs at, and where it was measured: the student scored as the
    preset predicts (its attention at the test length, else eager there) and trained as the preset
    trains it (else as it trained before packing); the NF4 teacher trained with the preset's
    `kbit_upcast`. All of them on real-length rows, padding included where the path pads."""
    test_length = preset["text"]["test_max_length"]
    scoring = preset.get("predict", {}).get("attn_implementation") or "eager"
    upcast = preset["teachers"]["llama"].get("kbit_upcast", True)
    picks = {
        "student scoring": (
            "student_predict",
            first_mfu(bench["student_predict"], {"attn": scoring, "max_length": test_length}, {"attn": "eager", "max_length": test_length}),
        ),
        "student training": ("student_train", first_mfu(bench["student_train"], student_path(preset), TODAY_STUDENT)),
        "teacher scoring": ("teacher_predict", first_mfu(bench["teacher_predict"], {})),
        "teacher training": ("teacher_train", first_mfu(bench["teacher_train"], {"kbit_upcast": upcast})),
    }
    measured = Measured(*(mfu for _, (mfu, _) in picks.values()))
    sources = {
        name: f"{fmt(mfu, '.1%')} ({ROWS[kind](entry)[3]})" if entry else "not measured" for name, (kind, (mfu, entry)) in picks.items()
    }
    return measured, sources
