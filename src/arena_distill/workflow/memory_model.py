"""The capacity plan's memory model: a model's architecture read off the meta device, and
the bytes its weights, trainable state and activations take on a GPU.

The sizes that decide whether a model fits are all in the config and the model's
architecture. Parameter counts come from the real architecture built on the meta device
(no weights, no download): a local model directory's `config.json`, else the file bundled
for a hub id under `config/model_configs/` (hub id with `/` as `--`), else the Hugging Face
cache; `tiny:` specs are sized from their `tiny` block.

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
workspaces come on top.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig

from arena_distill import LABELS
from arena_distill.errors import ConfigError
from arena_distill.modeling.models import DEFAULT_TARGETS, HEAD_MODULES, ModelSpec, config_attention, tiny_config
from arena_distill.workflow.config import WORKFLOW_DIR

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
