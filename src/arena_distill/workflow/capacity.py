"""Capacity plan: the peak GPU memory each model-loading rule needs, before any GPU hour is spent.

A 70B teacher that does not fit is found out by SLURM after hours in the queue; the sizes
that decide it are all in the config and the model's architecture. Parameter counts come
from the real architecture built on the meta device (no weights, no download): a local
model directory's `config.json`, else the file bundled for a hub id under
`config/model_configs/` (hub id with `/` as `--`), else the Hugging Face cache; `tiny:`
specs are sized from their `tiny` block.

The memory model (GiB = 2^30 bytes), per GPU, kept simple on purpose:

- weights: a 4-bit base is NF4 with double quantization, 0.5 B per projection parameter plus
  an fp8 absmax per 64 weights and an fp32 one per 256 blocks (~0.516 B); 8-bit is ~1 B.
  Embeddings, norms and the head are not quantized: in k-bit training
  `prepare_model_for_kbit_training` casts them to fp32 (4 B) unless `kbit_upcast: false`,
  otherwise they stay in the compute dtype (bf16, 2 B; fp32 on a CPU). A full-precision base
  is 2 B per parameter.
- trainable state: LoRA adds r × (in + out) per targeted Linear (shapes from the meta
  model); with the `score` head and every `modules_to_save` copy it is held as fp32
  parameter, gradient and two Adam moments, 16 B per trainable parameter.
- a fixed CUDA context of 1.5 GiB.
- the largest transient phase on top of that (they do not overlap: activations are freed
  before the optimizer step, gradients before a validation):
  - activations with gradient checkpointing: each layer's input (layers × tokens × hidden;
    fp32 in k-bit training, whose embeddings are fp32) plus one layer recomputed; without
    it every layer's saved tensors. A QLoRA layer of Llama-3-70B saves ~0.87 MiB per token
    (fp32 norms, input casts, LoRA dropout copies, q/k/v, four MLP tensors): modelled as
    83 B per hidden unit + 8 B per MLP unit, which scales it to other shapes.
    tokens = micro_batch_size × train_max_length, or `micro_batch_tokens` when packing;
  - the gradient all-reduce, which flattens and copies the gradients (2 × 4 B per trainable
    parameter) when a job has several GPUs;
  - a forward-only batch of `eval_max_tokens` (validation), `teacher_logits.max_tokens` or
    `predict.max_tokens` tokens: four MLP-wide and four hidden-wide activations per token
    in the compute dtype;
  - eager attention (the default for Gemma-2, whose soft-capped logits SDPA cannot compute)
    adds rows × heads × length² scores at ~8 B each (bf16 scores and tanh output, fp32
    softmax) per layer that holds them, a pack being one row of all its tokens; flex, SDPA
    and flash attention keep none; a k-bit base adds one dequantized bf16 weight.

These are estimates from shapes, not measurements: allocator fragmentation and library
workspaces come on top, so a rule above 90 % of the limit is reported TIGHT.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig

from arena_distill import LABELS
from arena_distill.errors import ConfigError
from arena_distill.modeling.models import DEFAULT_TARGETS, HEAD_MODULES, ModelSpec, config_attention, tiny_config
from arena_distill.training.stages import model_training
from arena_distill.workflow.config import WORKFLOW_DIR, rule_resources

GIB = 2**30
BUNDLED_CONFIGS = WORKFLOW_DIR / "config" / "model_configs"
CUDA_CONTEXT_GIB = 1.5
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)
INT8_BYTES = 1.0
TRAINABLE_BYTES = 16
"""fp32 parameter, gradient and the two Adam moments."""
SAVED_BYTES_PER_HIDDEN_UNIT = 83
SAVED_BYTES_PER_MLP_UNIT = 8
"""Saved activations per token and layer: 83 × 8192 + 8 × 28672 B = 0.87 MiB for Llama-3-70B QLoRA."""
FORWARD_TENSORS = 4
"""MLP-wide and hidden-wide activations alive at once per token in a forward-only batch."""
EAGER_SCORE_BYTES = 8
TIGHT = 0.9


@dataclass(frozen=True)
class ModelShape:
    """What the memory model needs of an architecture, read off its meta-device classifier."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    attention: str
    """The attention kernel the workflow picks for it when the spec names none."""
    params: int
    projection_params: int
    """Parameters of the decoder's Linear layers: what bitsandbytes and GPTQ quantize."""
    largest_projection: int
    linears: tuple[tuple[str, int, int], ...]
    """(module name, in features, out features) of every Linear outside the head."""
    module_params: tuple[tuple[str, int], ...]
    """(module name, parameters) of every module, for `modules_to_save`."""

    @property
    def other_params(self) -> int:
        """Embeddings, norms and the head: never quantized."""
        return self.params - self.projection_params

    def lora_params(self, lora: Mapping[str, Any]) -> int:
        targets = set(lora.get("target_modules", DEFAULT_TARGETS))
        return sum(lora["r"] * (fan_in + fan_out) for name, fan_in, fan_out in self.linears if leaf(name) in targets)

    def saved_module_params(self, lora: Mapping[str, Any]) -> int:
        """The head and every `modules_to_save` module, trained and saved in full beside LoRA."""
        saved = set(lora.get("modules_to_save", [])) | set(HEAD_MODULES)
        return sum(count for name, count in self.module_params if leaf(name) in saved)

    def trainable_params(self, lora: Mapping[str, Any]) -> int:
        return self.lora_params(lora) + self.saved_module_params(lora)

    def first_layer(self) -> list[tuple[int, int]]:
        return [(fan_in, fan_out) for name, fan_in, fan_out in self.linears if ".layers.0." in f".{name}."]


def leaf(name: str) -> str:
    return name.rsplit(".", 1)[-1]


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


def model_config(spec: Mapping[str, Any], key: str, tokenizer: Mapping[str, Any]) -> PretrainedConfig:
    """The architecture of the model `spec` names, without its weights; `key` names the spec in errors."""
    raw = spec["model"]
    model = ModelSpec(raw)
    if model.is_tiny:
        if "tiny" not in spec:
            raise ConfigError(f"the tiny model {raw!r} has no `tiny` sizes", key=key.rsplit(".", 1)[0] + ".tiny")
        return tiny_config(model.arch, spec["tiny"], vocab_size=tokenizer["vocab_size"])
    local = WORKFLOW_DIR / raw
    bundled = BUNDLED_CONFIGS / f"{raw.replace('/', '--')}.json"
    for source in (local / "config.json", bundled):
        if source.is_file():
            return AutoConfig.from_pretrained(source)
    try:
        return AutoConfig.from_pretrained(raw, local_files_only=True)
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"no architecture config for model {raw!r}: not a local directory with config.json, "
            f"not bundled as {bundled.relative_to(WORKFLOW_DIR)}, not in the Hugging Face cache",
            key=key,
        ) from error


def model_shape(config: PretrainedConfig) -> ModelShape:
    return shape_of_config(config.to_json_string(use_diff=False))


@functools.lru_cache(maxsize=None)
def shape_of_config(config_json: str) -> ModelShape:
    """Build the 3-label classifier on the meta device (shapes only: no memory, no weights)."""
    config = AutoConfig.for_model(**json.loads(config_json))
    config.num_labels = len(LABELS)
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(config)
    projections = {
        name: module for name, module in model.named_modules() if isinstance(module, torch.nn.Linear) and leaf(name) not in HEAD_MODULES
    }
    return ModelShape(
        layers=config.num_hidden_layers,
        hidden=config.hidden_size,
        intermediate=config.intermediate_size,
        heads=config.num_attention_heads,
        attention=config_attention(config),
        params=sum(p.numel() for p in model.parameters()),
        projection_params=sum(p.numel() for module in projections.values() for p in module.parameters()),
        largest_projection=max(module.weight.numel() for module in projections.values()),
        linears=tuple((name, module.in_features, module.out_features) for name, module in projections.items()),
        module_params=tuple((name, sum(p.numel() for p in module.parameters())) for name, module in model.named_modules() if name),
    )


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


DTYPE_NAMES = {2: "bf16", 4: "fp32"}
"""Compute dtypes by bytes per value (a GPU computes in bf16, a CPU in fp32)."""


def weight_bytes(shape: ModelShape, bits: int | None, other_bytes: int, full_bytes: int) -> tuple[str, float]:
    """(dtype label, bytes) of the weights: k-bit projections with the rest at `other_bytes`, or all at
    `full_bytes`."""
    if bits is None:
        return DTYPE_NAMES[full_bytes], shape.params * full_bytes
    per_param, name = (NF4_BYTES, "nf4") if bits == 4 else (INT8_BYTES, "int8")
    weights = shape.projection_params * per_param + shape.other_params * other_bytes
    return f"{name} + {DTYPE_NAMES[other_bytes]}", weights


def forward_bytes(shape: ModelShape, tokens: int, length: int, attention: str, value_bytes: int, bits: int | None) -> float:
    """Transient memory of a forward-only batch of `tokens` tokens in rows of `length`."""
    rows = max(1, tokens // length)
    activations = tokens * FORWARD_TENSORS * (shape.intermediate + shape.hidden) * value_bytes
    return activations + eager_scores(shape, rows, length, attention) + dequantized(shape, bits)


def eager_scores(shape: ModelShape, rows: int, length: int, attention: str) -> float:
    """One layer's materialised attention scores (eager only; SDPA and flash keep none)."""
    return rows * shape.heads * length**2 * EAGER_SCORE_BYTES if attention == "eager" else 0.0


def dequantized(shape: ModelShape, bits: int | None) -> float:
    """bitsandbytes dequantizes one weight to bf16 for its matmul."""
    return shape.largest_projection * 2 if bits else 0.0


def training_activations(
    shape: ModelShape, tokens: int, rows: int, length: int, attention: str, checkpointing: bool, bits: int | None, residual_bytes: int
) -> tuple[str, float]:
    """(phase name, bytes) of the activations a training micro-batch keeps for backward."""
    one_layer = tokens * (SAVED_BYTES_PER_HIDDEN_UNIT * shape.hidden + SAVED_BYTES_PER_MLP_UNIT * shape.intermediate)
    one_layer += eager_scores(shape, rows, length, attention)
    if checkpointing:  # every layer's input, and one layer recomputed at a time during backward
        name, saved = "activations, checkpointed", shape.layers * tokens * shape.hidden * residual_bytes + one_layer
    else:
        name, saved = "activations, no checkpointing", shape.layers * one_layer
    return name, saved + dequantized(shape, bits)


def gib_parts(static: Mapping[str, float], phases: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    """The static parts and the largest transient phase, in GiB, with the CUDA context."""
    peak = max(phases, key=phases.get)
    parts = {**static, "CUDA context": CUDA_CONTEXT_GIB * GIB, f"peak: {peak}": phases[peak]}
    return tuple((name, value / GIB) for name, value in parts.items() if value)


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


def post_pretrained_models(config: Mapping[str, Any], trained: Iterable[str]) -> list[str]:
    """The models post_pretrain trains (as rules/common.smk decides)."""
    models = {**config["teachers"], "student": config["student"]}
    return [
        name
        for name in trained
        if config["post_pretrain"]["enabled"] and models[name].get("post_pretrain", True) and not models[name].get("post_pretrained")
    ]


def plan(config: Mapping[str, Any], profile: str | Path, gpu_memory_gib: float) -> list[Estimate]:
    """An estimate per job kind of the workflow that loads a model, in DAG order."""
    teachers = [] if config["distill"].get("teacher_logits") else list(config["teachers"])
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
        for name in post_pretrained_models(config, [*teachers, "student"])
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
