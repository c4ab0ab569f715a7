"""FLOP counts, MFU and wall-time projections for the GPU check: pure arithmetic, no GPU.

The FLOP model counts what a step must compute, not what it happens to execute:

- forward, per token of a sequence of `context` tokens: 2 FLOPs per projection weight plus
  causal attention, whose QK^T and AV products over on average half the context come to
  2 * layers * context * (heads * head_dim); embeddings are lookups and the 3-way head is
  negligible;
- LoRA training, per token: the forward plus the backward pass to the inputs (2x forward
  for projections, 2x for attention); the frozen base needs no weight gradients and the
  LoRA matrices are under 3 % of the FLOPs. Recomputation under gradient checkpointing is
  not counted: it shows up as a lower MFU, which is the cost it has.

MFU = achieved FLOP/s over the GPU's dense bf16 (fp16 on a T4) peak. A projection divides
the FLOPs of a stage by GPUs x peak x the MFU measured for that kind of work.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),
    ("H200", 989.0),
    ("A100", 312.0),
    ("L4", 121.0),
    ("T4", 65.0),
)
"""Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, by a part of the device name; the
first match wins, so the PCIe and NVL variants come before the plain H100 (SXM)."""

H100_PEAK = 989.0
NODE_GPUS = 8
"""GPUs of a training job (the SLURM profile gives post_pretrain, train_teacher and distill_student a node)."""
T4_PEAK = 65.0
"""T4 has no bf16: its fp16 tensor-core peak, what an fp16 model runs at on Kaggle."""

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
KAGGLE_TEST_PAIRS = 25_000
KAGGLE_TEST_TOKENS = 650
KAGGLE_LIMIT_HOURS = 9.0
TRAIN_TOKENS = 600
"""Mean tokens of a training row at the preset's 1024-token budget (the bundled real rows)."""
POST_PRETRAIN_TOKENS = 100e6
"""The post-pretraining corpus size is not known: its stage is given per 100M tokens."""


@dataclass(frozen=True)
class Shape:
    """The sizes of a decoder that its FLOPs depend on."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> "Shape":
        heads = config["num_attention_heads"]
        return cls(
            config["hidden_size"],
            config["num_hidden_layers"],
            heads,
            config.get("num_key_value_heads", heads),
            config.get("head_dim") or config["hidden_size"] // heads,
            config["intermediate_size"],
        )

    @property
    def projection_params(self) -> int:
        """q, k, v, o and the three MLP projections of every layer."""
        attention = 2 * self.hidden * self.heads * self.head_dim + 2 * self.hidden * self.kv_heads * self.head_dim
        return self.layers * (attention + 3 * self.hidden * self.intermediate)

    def attention_flops(self, context: int) -> float:
        """Causal attention FLOPs per token of a `context`-token sequence (forward)."""
        return 2.0 * self.layers * context * self.heads * self.head_dim

    def forward_flops(self, context: int) -> float:
        return 2.0 * self.projection_params + self.attention_flops(context)

    def lora_train_flops(self, context: int) -> float:
        return 4.0 * self.projection_params + 3.0 * self.attention_flops(context)


def peak_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a device by name; None for one not in the table."""
    for part, peak in PEAK_TFLOPS:
        if part.lower() in device_name.lower():
            return peak
    return None


def mfu(tokens_per_second: float, flops_per_token: float, peak: float | None) -> float | None:
    """Model FLOP utilisation as a fraction of `peak` TFLOP/s (None without a known peak)."""
    if peak is None:
        return None
    return tokens_per_second * flops_per_token / (peak * 1e12)


def hours(flops: float, gpus: int, peak: float, utilisation: float) -> float:
    return flops / (gpus * peak * 1e12 * utilisation) / 3600.0


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
    note = (
        f"{train_rows:,} rows x {epochs:g} epoch(s), {steps:,} steps; {n_evals} validations of {val_rows:,} rows"
        + (f" ({train_hours:.1f} h training + {eval_hours:.1f} h validation)" if total is not None else "")
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
        stages.append(
            fold_run(f"train_teacher {name}", shape, spec, preset, (measured.teacher_train, measured.teacher_forward))
        )
        shards = preset["teacher_logits"]["n_shards"]
        rows = fold_rows(folds, True)[0] / shards
        stages.append(
            Stage(
                f"teacher_logits {name}",
                folds * shards,
                scaled(
                    measured.teacher_forward, shape.forward_flops(TRAIN_TOKENS) * rows * TRAIN_TOKENS, 1, H100_PEAK
                ),
                f"{rows:,.0f} rows (both orders) per shard on 1 GPU",
            )
        )
    stages.append(
        Stage(
            "post_pretrain student",
            1,
            scaled(
                measured.student_train, student.lora_train_flops(TRAIN_TOKENS) * POST_PRETRAIN_TOKENS, gpus, H100_PEAK
            ),
            "per 100M tokens (corpus size not known)",
        )
    )
    stages.append(
        fold_run(
            "distill_student", student, preset["student"], preset, (measured.student_train, measured.student_forward)
        )
    )
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
    verdict = (
        ""
        if t4 is None
        else f"; {'within' if t4 <= KAGGLE_LIMIT_HOURS else 'over'} the {KAGGLE_LIMIT_HOURS:g} h limit"
    )
    stages.append(
        Stage(
            "Kaggle test on 2x T4", 1, t4, f"fp16 peak {T4_PEAK:g} TFLOP/s each at the H100's measured MFU" + verdict
        )
    )
    return stages
