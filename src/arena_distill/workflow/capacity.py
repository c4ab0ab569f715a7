"""Capacity plan: the peak GPU memory each model-loading rule needs, before any GPU hour is spent.

A 70B teacher that does not fit is found out by SLURM after hours in the queue; the sizes
that decide it are all in the config and the model's architecture. For every job of the
workflow that loads a model (post-pretraining, the teachers and their logits, the
student's distillation, merge, quantization and scoring) the plan adds up the parts the
memory model (`arena_distill.workflow.memory_model`) gives for that rule's settings, and
sets the total against the memory the profile gives one job of the rule: a GPU's, or the
host RAM of a job that runs on the CPU. `table` renders the plan as Markdown, each
estimate's composition under it.

These are estimates from shapes, not measurements: allocator fragmentation and library
workspaces come on top, so a rule above 90 % of the limit is reported TIGHT.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arena_distill.training.stages import model_training
from arena_distill.workflow.config import rule_resources
from arena_distill.workflow.memory_model import (
    DTYPE_NAMES,
    GIB,
    TRAINABLE_BYTES,
    ModelShape,
    forward_bytes,
    gib_parts,
    model_config,
    model_shape,
    training_activations,
    weight_bytes,
)
from arena_distill.workflow.plan import RunPlan

TIGHT = 0.9


@dataclass(frozen=True)
class Estimate:
    """One rule's plan: what it loads, where, and the peak memory that needs (GiB)."""

    rule: str
    model: str
    gpus: int
    """GPUs per job; 0 = the job runs on the CPU and the estimate is host RAM."""
    dtype: str
    params: int | None
    trainable: int | None
    parts: tuple[tuple[str, float], ...]
    limit_gib: float | None

    @property
    def loads_model(self) -> bool:
        return self.params is not None

    @property
    def total_gib(self) -> float:
        return sum(gib for _, gib in self.parts)

    @property
    def verdict(self) -> str:
        if not self.loads_model:
            return "no model loaded"
        if self.limit_gib is None:
            return "no limit known"
        if self.total_gib > self.limit_gib:
            return "OOM"
        return "TIGHT" if self.total_gib > TIGHT * self.limit_gib else "fits"


@dataclass(frozen=True)
class Job:
    """What the profile gives one job of a rule: GPUs (0: it runs on the CPU), memory per GPU and host RAM (GiB)."""

    gpus: int
    gpu_gib: float
    host_gib: float | None

    @classmethod
    def of(cls, profile: str | Path, rule: str, gpu_memory_gib: float) -> "Job":
        resources = rule_resources(profile, rule)
        mem_mb = resources.get("mem_mb")
        host_gib = mem_mb / 1024 if isinstance(mem_mb, (int, float)) else None
        return cls(int(resources.get("gpu", 0)), gpu_memory_gib, host_gib)

    @property
    def limit_gib(self) -> float | None:
        """The memory a job of the rule must fit: one GPU's, or the host RAM of a CPU job."""
        return self.gpu_gib if self.gpus else self.host_gib

    def compute_bytes(self, precision: str = "auto") -> int:
        """Bytes per value of the compute dtype: bf16 on a GPU unless fp32 is asked for; fp32 on a CPU."""
        return 2 if self.gpus and precision != "fp32" else 4


def describe(name: str, spec: Mapping[str, Any]) -> str:
    return f"{name}: {spec['model']}"


def train_estimate(rule: str, name: str, spec: Mapping[str, Any], shape: ModelShape, config: Mapping[str, Any], job: Job) -> Estimate:
    """A LoRA classifier run (post_pretrain, train_teacher, distill_student) on every GPU of the job."""
    training = model_training(config["training"], spec)
    bits = spec.get("load_in_bits")
    compute = job.compute_bytes(training["precision"])
    length = config["text"]["train_max_length"]
    attention = spec.get("attn_implementation") or shape.attention
    frozen = 4 if bits and spec.get("kbit_upcast", True) else compute  # the residual stream's dtype too
    dtype, weights = weight_bytes(shape, bits, frozen, compute)
    trainable = shape.trainable_params(spec["lora"])
    if training["packing"]:  # one sequence of all a pack's tokens: its scores are square in the pack
        tokens, rows, row_length = training["micro_batch_tokens"], 1, training["micro_batch_tokens"]
    else:
        rows = training["micro_batch_size"]
        tokens, row_length = rows * length, length
    activations, saved = training_activations(shape, tokens, rows, row_length, attention, training["gradient_checkpointing"], bits, frozen)
    phases = {
        activations: saved,
        "gradient all-reduce": 2 * trainable * 4 if job.gpus > 1 else 0,
        "validation batch": forward_bytes(shape, training["eval_max_tokens"], length, attention, compute, bits),
    }
    static = {f"weights ({dtype})": weights, "trainable state (16 B/param)": trainable * TRAINABLE_BYTES}
    return Estimate(rule, describe(name, spec), job.gpus, dtype, shape.params, trainable, gib_parts(static, phases), job.limit_gib)


def logits_estimate(name: str, spec: Mapping[str, Any], shape: ModelShape, config: Mapping[str, Any], job: Job) -> Estimate:
    """teacher_logits: the teacher with its fold adapter, scoring its shard."""
    bits = spec.get("load_in_bits")
    compute = job.compute_bytes(config["training"]["precision"])
    dtype, weights = weight_bytes(shape, bits, compute, compute)
    # A k-bit base keeps the fp32 adapter beside it; a full-precision one has it merged in.
    adapter = shape.trainable_params(spec["lora"]) * 4 if bits else 0
    attention = spec.get("attn_implementation") or shape.attention
    scoring = forward_bytes(shape, config["teacher_logits"]["max_tokens"], config["text"]["train_max_length"], attention, compute, bits)
    static = {f"weights ({dtype})": weights, "adapter (fp32, unmerged)": adapter}
    return Estimate(
        "teacher_logits",
        describe(name, spec),
        job.gpus,
        dtype,
        shape.params,
        None,
        gib_parts(static, {"scoring batch": scoring}),
        job.limit_gib,
    )


CONFIG_DTYPES = {"float16": ("fp16", 2), "bfloat16": ("bf16", 2), "float32": ("fp32", 4)}


def config_dtype(name: str, job: Job) -> tuple[str, int]:
    """(name, bytes per value) of a config dtype (`merge.dtype`, `quantize.dtype`, `predict.dtype`),
    `auto` resolved where the job runs: bf16 on a GPU (the plan's GPUs have it), fp32 on a CPU."""
    if name == "auto":
        return DTYPE_NAMES[job.compute_bytes()], job.compute_bytes()
    return CONFIG_DTYPES[name]


def merge_dtype(config: Mapping[str, Any], merge_job: Job) -> tuple[str, int]:
    """(name, bytes per parameter) of the merged student: `merge.dtype` where merge_student runs."""
    return config_dtype(config["merge"]["dtype"], merge_job)


def merge_estimate(spec: Mapping[str, Any], shape: ModelShape, config: Mapping[str, Any], job: Job) -> Estimate:
    """merge_student runs on the CPU whatever the profile gives it: host RAM for the base, the
    loading/saving buffers (about one more copy) and the fp32 adapter."""
    dtype, per_param = merge_dtype(config, job)
    static = {
        f"base ({dtype})": shape.params * per_param,
        "load and save buffers": shape.params * per_param,
        "adapter (fp32)": shape.trainable_params(spec["lora"]) * 4,
    }
    return Estimate(
        "merge_student",
        describe("student", spec),
        0,
        dtype,
        shape.params,
        None,
        tuple((part, value / GIB) for part, value in static.items()),
        job.host_gib,
    )


def quantize_estimate(spec: Mapping[str, Any], shape: ModelShape, config: Mapping[str, Any], job: Job) -> Estimate:
    """quantize_student: GPTQ calibrates the merged student in `quantize.dtype` block by block; bnb loads it k-bit."""
    quantize = config["quantize"]
    if quantize["method"] == "none":
        return no_model("quantize_student", spec, job)
    name, compute = config_dtype(quantize["dtype"], job)
    if quantize["method"] == "bnb":
        dtype, weights = weight_bytes(shape, quantize["bits"], compute, compute)
        return Estimate(
            "quantize_student",
            describe("student", spec),
            job.gpus,
            dtype,
            shape.params,
            None,
            gib_parts({f"weights ({dtype})": weights}, {}),
            job.limit_gib,
        )
    length = min(config["text"]["train_max_length"], quantize["model_seqlen"] or config["text"]["train_max_length"])
    layer = shape.first_layer()
    attention = spec.get("attn_implementation") or shape.attention
    static = {
        f"weights ({name})": shape.params * compute,
        "calibration block inputs and outputs": 2 * quantize["n_calibration"] * length * shape.hidden * compute,
        "Hessians of one layer (fp32)": sum(fan_in**2 for fan_in, _ in layer) * 4,
        "one layer in fp32": sum(fan_in * fan_out for fan_in, fan_out in layer) * 4,
    }
    phases = {"calibration forward": forward_bytes(shape, length, length, attention, compute, None)}
    return Estimate(
        "quantize_student",
        describe("student", spec),
        job.gpus,
        f"{name} -> gptq int{quantize['bits']}",
        shape.params,
        None,
        gib_parts(static, phases),
        job.limit_gib,
    )


def served_weights(shape: ModelShape, config: Mapping[str, Any], merged: tuple[str, int], job: Job) -> tuple[str, float]:
    """(dtype label, bytes) of the exported model (`results/model`) as prediction loads it (`predict.dtype`)."""
    quantize = config["quantize"]
    if quantize["method"] == "gptq":
        name, size = config_dtype(config["predict"]["dtype"], job)
        per_param = quantize["bits"] / 8 + 4 / quantize["group_size"]  # a 16-bit scale and packed zero per group
        return f"gptq int{quantize['bits']} + {name}", shape.projection_params * per_param + shape.other_params * size
    if quantize["method"] == "bnb":
        return weight_bytes(shape, quantize["bits"], merged[1], merged[1])
    return merged[0], shape.params * merged[1]


def scoring_estimate(
    rule: str, spec: Mapping[str, Any], shape: ModelShape, config: Mapping[str, Any], job: Job, merge_job: Job
) -> Estimate:
    """predict scores the exported model; score_holdout scores the merged and the exported one in turn."""
    predict = config["predict"]
    length = max(predict.get("max_lengths") or [config["text"]["test_max_length"]])
    merged = merge_dtype(config, merge_job)
    dtype, weights = served_weights(shape, config, merged, job)
    if config["average"]["method"] == "ensemble":  # every fold's model is held at once
        dtype, weights = f"{config['folds']['n']} x {dtype}", weights * config["folds"]["n"]
    if rule == "score_holdout" and shape.params * merged[1] > weights:
        dtype, weights = f"merged {merged[0]}", shape.params * merged[1]
    attention = spec.get("attn_implementation") or shape.attention
    scoring = forward_bytes(shape, predict["max_tokens"], length, attention, job.compute_bytes(), None)
    phases = {"scoring batch": scoring}
    return Estimate(
        rule,
        describe("student", spec),
        job.gpus,
        dtype,
        shape.params,
        None,
        gib_parts({f"weights ({dtype})": weights}, phases),
        job.limit_gib,
    )


def no_model(rule: str, spec: Mapping[str, Any], job: Job) -> Estimate:
    return Estimate(rule, describe("student", spec), job.gpus, "-", None, None, (), job.limit_gib)


def plan(config: Mapping[str, Any], profile: str | Path, gpu_memory_gib: float) -> list[Estimate]:
    """An estimate per job kind of the workflow that loads a model, in DAG order (the jobs the
    workflow's own `RunPlan` plans)."""
    run = RunPlan(config)
    teachers = run.teachers()
    specs = {
        **{name: (config["teachers"][name], f"teachers.{name}.model") for name in teachers},
        "student": (config["student"], "student.model"),
    }
    shapes = {name: model_shape(model_config(spec, key, config["tokenizer"])) for name, (spec, key) in specs.items()}

    def job(rule: str) -> Job:
        return Job.of(profile, rule, gpu_memory_gib)

    student = config["student"]
    estimates = [
        train_estimate("post_pretrain", name, specs[name][0], shapes[name], config, job("post_pretrain"))
        for name in run.used_models()
        if run.post_pretraining(name)
    ]
    for name in teachers:
        spec = config["teachers"][name]
        estimates.append(train_estimate("train_teacher", name, spec, shapes[name], config, job("train_teacher")))
        estimates.append(logits_estimate(name, spec, shapes[name], config, job("teacher_logits")))
    estimates += [
        train_estimate("distill_student", "student", student, shapes["student"], config, job("distill_student")),
        merge_estimate(student, shapes["student"], config, job("merge_student")),
        quantize_estimate(student, shapes["student"], config, job("quantize_student")),
        scoring_estimate("predict", student, shapes["student"], config, job("predict"), job("merge_student")),
    ]
    # Models are scored on the holdout prompts only when the run keeps some (score_holdout is then in the DAG).
    if config["folds"]["holdout"]:
        estimates.append(scoring_estimate("score_holdout", student, shapes["student"], config, job("score_holdout"), job("merge_student")))
    return estimates


def count(value: int | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.2f}{unit}"
    return str(value)


def table(estimates: Sequence[Estimate]) -> str:
    """The plan as a Markdown table, then each estimate's composition."""
    columns = ["rule", "model", "GPUs per job", "dtype/bits", "params", "trainable", "estimate GiB per GPU", "limit GiB", "verdict"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for e in estimates:
        where = str(e.gpus) if e.gpus else "CPU"
        total = "-" if not e.loads_model else f"{e.total_gib:.1f}" if e.gpus else f"{e.total_gib:.1f} (host RAM)"
        limit = "-" if e.limit_gib is None else f"{e.limit_gib:.0f}"
        cells = [e.rule, e.model, where, e.dtype, count(e.params), count(e.trainable), total, limit, e.verdict]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Composition (GiB):"]
    lines += [f"- {e.rule} {e.model}: " + ", ".join(f"{part} {gib:.1f}" for part, gib in e.parts) for e in estimates if e.loads_model]
    return "\n".join(lines)
