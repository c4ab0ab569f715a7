"""FLOP counts, MFU, wall-time projections and the benchmark report of the GPU check: pure
arithmetic and text over the numbers `arena_distill.gpu_benchmarks` measured, no GPU.

The FLOP model counts what a step must compute, not what it happens to execute:

- forward, per token of a sequence of `context` tokens: 2 FLOPs per projection weight plus
  causal attention, whose QK^T and AV products over on average half the context come to
  2 * layers * context * (heads * head_dim); embeddings are lookups and the 3-way head is
  negligible;
- LoRA training, per token: the forward plus the backward pass to the inputs (2x forward
  for projections, 2x for attention); the frozen base needs no weight gradients and the
  LoRA matrices are under 3 % of the FLOPs. Recomputation under gradient checkpointing is
  not counted: it shows up as a lower MFU, which is the cost it has.

MFU = achieved FLOP/s over the GPU's dense bf16 (fp16 on a T4) peak. The benchmarks run rows
of the real arena lengths and credit each row's own FLOPs (`rows_flops`): a padded path
computes its padding too, and that is waste, not credit, so its MFU is lower by its padding
share. A projection divides the FLOPs of a stage by GPUs x peak x the MFU measured for the
path the preset runs (`measured_mfus`): where that path pads, its measured MFU already
carries the padding, and nothing is scaled twice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
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


def rows_flops(lengths: Iterable[int], per_token: Callable[[int], float]) -> float:
    """FLOPs of whole rows, each at its own length (`per_token` of a context, e.g.
    `Shape.forward_flops`): what a pass must compute for its real tokens, padding not counted."""
    return float(sum(int(length) * per_token(int(length)) for length in lengths))


def mfu(flops: float, seconds: float, peak: float | None) -> float | None:
    """MFU of `flops` done in `seconds` against `peak` TFLOP/s (None without a known peak)."""
    return None if peak is None else flops / seconds / (peak * 1e12)


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


def first_mfu(entries: Sequence[Mapping[str, Any]], *preferences: Mapping[str, Any]) -> tuple[float | None, Mapping[str, Any]]:
    """The MFU of the first entry that matches a preference (every key equal), in the order of
    the preferences, and that entry ({} when none has an MFU)."""
    for match in preferences:
        for entry in entries:
            if entry.get("mfu") is not None and all(entry.get(key) == value for key, value in match.items()):
                return entry["mfu"], entry
    return None, {}


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


def fmt(value: float | None, pattern: str) -> str:
    return "n/a" if value is None else format(value, pattern)


ROWS: dict[str, Callable[[Mapping[str, Any]], tuple[str, str, str, str]]] = {
    "student_predict": lambda e: ("a", "gemma-2-9b bf16", "predict", f"{e['attn']}, up to {e['max_length']:,} tokens"),
    "student_train": lambda e: ("b", "gemma-2-9b bf16 + LoRA r64", "train", e["case"]),
    "teacher_predict": lambda e: (
        "d",
        f"Llama-3-70B shape, {e['layers']} layers, NF4",
        "predict",
        f"sdpa, up to {e['max_length']:,} tokens",
    ),
    "teacher_train": lambda e: (
        "d",
        f"Llama-3-70B shape, {e['layers']} layers, NF4 + LoRA r64",
        "train",
        f"packed {e['micro_batch_tokens']:,}, sdpa, checkpointing, kbit_upcast {'on' if e['kbit_upcast'] else 'off'}",
    ),
}
"""(comparison, model, work, setting) of a benchmark entry of each kind, for its report row."""
TABLE_HEAD = ["| | model | work | setting | tokens/s | MFU | peak GiB | real tokens | note |", "|---|---|---|---|---|---|---|---|---|"]


def entry_note(entry: Mapping[str, Any]) -> str:
    if "error" in entry:
        return f"FAILED: {entry['error']}"
    parts = [entry["note"]] if "note" in entry else []
    if "first_call_s" in entry:
        parts.append(f"first call {entry['first_call_s']:.1f} s")
    if "max_abs_logit_diff" in entry:
        parts.append(f"largest logit difference from eager {entry['max_abs_logit_diff']:.3g}")
    if "flex_graphs" in entry:
        parts.append(f"{entry['flex_graphs']} flex graphs compiled")
    return "; ".join(parts)


def bench_row(kind: str, entry: Mapping[str, Any]) -> str:
    """One report row: tokens/s and MFU count real tokens; `real tokens` is their share of the tokens computed."""
    comparison, model, work, setting = ROWS[kind](entry)
    share = entry["real_tokens"] / entry["computed_tokens"] if entry.get("computed_tokens") else None
    numbers = [fmt(entry.get(key), pattern) for key, pattern in (("tokens_per_s", ",.0f"), ("mfu", ".1%"), ("peak_gib", ".1f"))]
    numbers.append(fmt(share, ".0%"))
    return f"| {comparison} | {model} | {work} | {setting} | {' | '.join(numbers)} | {entry_note(entry)} |"


def gradient_lines(check: Mapping[str, Any]) -> list[str]:
    """(c): each precision's largest relative error of a LoRA/head gradient (or of the logits)."""
    lines = [
        f"(c) {check['candidate']} vs eager on gemma-2-9b cut to {check['layers']} layers, {check['rows']} real-length rows "
        f"packed into {check['tokens']:,} tokens, attention scores scaled into the soft-cap's bend: "
        f"{'PASS' if check.get('passed') else 'FAIL'}"
    ]
    for dtype, found in check.get("dtypes", {}).items():
        if "error" in found:
            lines.append(f"- {dtype}: {found['error']}")
            continue
        own = "" if found.get("eager_max_error") is None else f"; eager's own {dtype} error {found['eager_max_error']:.2e}"
        lines.append(
            f"- {dtype}: largest relative error against the fp32 eager gradient {found['max_error']:.2e} "
            f"({found['worst']}){own}; limit {found['limit']}"
        )
    return lines


def gptq_lines(bench: Mapping[str, Any]) -> list[str]:
    """(e): GPTQ's tokens/s against its bf16 merge, and that ratio applied to the full model's flex scoring."""
    gptq = bench["gptq"]
    if gptq.get("error"):
        return [f"(e) GPTQ 8-bit: FAILED ({gptq['error']})"]
    ratio = gptq["gptq"]["tokens_per_s"] / gptq["bf16"]["tokens_per_s"]
    _, full = first_mfu(bench["student_predict"], {"attn": gptq["attn"], "max_length": gptq["max_length"]})
    scaled = f"; on the full model's {gptq['attn']} scoring: about {full['tokens_per_s'] * ratio:,.0f} tokens/s" if full else ""
    return [
        f"(e) GPTQ 8-bit (gemma-2-9b cut to {gptq['layers']} layer, kernels {', '.join(gptq['kernels']) or 'none'}), "
        f"{gptq['attn']} up to {gptq['max_length']:,} tokens: {gptq['gptq']['tokens_per_s']:,.0f} tokens/s against "
        f"{gptq['bf16']['tokens_per_s']:,.0f} for its bf16 merge, ratio {ratio:.2f}{scaled}; largest logit difference "
        f"{gptq['max_abs_logit_diff']:.3g}"
    ]


def bench_lines(bench: Mapping[str, Any]) -> list[str]:
    """The benchmarks' report: the table of speeds, then (c), the teacher's logit cost, (e) and what was not measured."""
    lines = [
        f"Peak: {fmt(bench['peak_tflops'], '.0f')} TFLOP/s dense bf16 ({bench['gpu']}). Rows of the real arena lengths; "
        "tokens/s and MFU count real tokens only (padding is waste), MFU model FLOPs (no recomputation).",
        "",
        *TABLE_HEAD,
    ]
    lines += [bench_row(kind, entry) for kind in ROWS for entry in bench[kind]]
    if bench.get("gradient_check"):
        lines += ["", *gradient_lines(bench["gradient_check"])]
    if bench.get("teacher_logit_diff") is not None:
        lines += ["", f"(d) kbit_upcast off against on, same NF4 weights, eval: largest logit difference {bench['teacher_logit_diff']:.3g}"]
    if bench.get("gptq"):
        lines += ["", *gptq_lines(bench)]
    if bench["not_measured"]:
        lines += ["", f"Not measured (out of time): {', '.join(bench['not_measured'])}"]
    for extra in ([f"FAILED: {error}" for error in bench["errors"]], bench["notes"]):
        lines += ["", *extra] if extra else []
    return lines


def warmup_lines(warmups: Mapping[str, Any]) -> list[str]:
    """The side processes beside the workflow: what each built and in how long (the flex
    warm-up's seconds are FlexAttention's compile time on first use)."""
    lines = []
    flex = warmups.get("flex")
    if flex is not None and flex.get("error"):
        lines.append(f"flex_attention warm-up: FAILED ({flex['error']})")
    elif flex is not None:
        parts = ", ".join(f"{part} {seconds:.0f} s" for part, seconds in flex["seconds"].items())
        errors = f"; errors: {'; '.join(flex['errors'])}" if flex["errors"] else ""
        lines.append(
            f"flex_attention warm-up beside the workflow (gemma-2-9b's attention on a narrow model, {flex['graphs']} "
            f"graphs): {parts}, compiles included{errors}"
        )
    gptq = warmups.get("gptq")
    if gptq is not None and gptq.get("error"):
        lines.append(f"GPTQ warm-up: FAILED ({gptq['error']})")
    elif gptq is not None:
        export = f"; the benchmark's model exported in {gptq['export_seconds']:.0f} s" if "export_seconds" in gptq else ""
        lines.append(
            f"GPTQ kernels built on first use (one-layer export and load, beside the workflow): {gptq['seconds']:.0f} s; "
            f"the loaded model runs {', '.join(gptq['kernels']) or 'no GPTQModel layer'}{export}"
        )
    return lines
