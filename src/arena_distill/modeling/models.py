"""Model specs and the tiny random-init models of the embedded default.

A spec is either `tiny:<arch>` (built here from a config, no download) or anything
`from_pretrained` accepts (a local directory or a hub id) for real runs. Tiny checkpoints
are saved as ordinary causal-LM checkpoints with a 3-label head description in their
config, so every later stage loads them with `AutoModelFor...from_pretrained(path)` exactly
like a real base model: tiny and real share every code path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import (
    LoraConfig,
    PeftConfig,
    PeftModel,
    TaskType,
    get_peft_model,
    get_peft_model_state_dict,
    load_peft_weights,
    prepare_model_for_kbit_training,
    set_peft_model_state_dict,
)
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BitsAndBytesConfig,
    Gemma2Config,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2Config,
)

from arena_distill import LABELS
from arena_distill.errors import ConfigError
from arena_distill.io import atomic_path, named_load
from arena_distill.modeling.model_lock import locked_path

TINY_PREFIX = "tiny:"
TINY_ARCHS: dict[str, type[PretrainedConfig]] = {"llama": LlamaConfig, "qwen2": Qwen2Config, "gemma2": Gemma2Config}
SIZE_KEYS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "max_position_embeddings",
)


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec: `arch` is set for tiny models, `path` for real ones."""

    raw: str

    @property
    def is_tiny(self) -> bool:
        return self.raw.startswith(TINY_PREFIX)

    @property
    def arch(self) -> str:
        if not self.is_tiny:
            raise ValueError(f"{self.raw!r} is not a tiny spec")
        arch = self.raw[len(TINY_PREFIX) :]
        if arch not in TINY_ARCHS:
            raise ValueError(f"unknown tiny architecture {arch!r} in {self.raw!r}; choose from {sorted(TINY_ARCHS)}")
        return arch


def tiny_config(
    arch: str, sizes: Mapping[str, int], *, vocab_size: int, bos_token_id: int | None = None, eos_token_id: int | None = None
) -> PretrainedConfig:
    """The config of a tiny `arch` model sized by `sizes`, with the tokenizer's vocab size and special ids
    (the capacity plan sizes a tiny model before its tokenizer exists, so they come as numbers)."""
    unknown = set(sizes) - set(SIZE_KEYS)
    if unknown:
        raise ValueError(f"unknown size keys {sorted(unknown)}; allowed: {list(SIZE_KEYS)}")
    heads = sizes["num_attention_heads"]
    extra = {}
    if arch == "gemma2":
        # Gemma2 scales queries by query_pre_attn_scalar**-0.5; tie it to head_dim as in 9B.
        head_dim = sizes["hidden_size"] // heads
        extra = {"head_dim": head_dim, "query_pre_attn_scalar": head_dim}
    return TINY_ARCHS[arch](
        vocab_size=vocab_size,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=eos_token_id,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
        **{key: sizes[key] for key in SIZE_KEYS if key in sizes},
        **extra,
    )


def build_tiny_model(arch: str, tokenizer: PreTrainedTokenizerBase, sizes: Mapping[str, int], seed: int) -> PreTrainedModel:
    """A random-init causal LM; the same seed gives the same weights."""
    config = tiny_config(arch, sizes, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: str | Path) -> None:
    """`save_pretrained` model and tokenizer into `out_dir`, atomically."""
    with atomic_path(out_dir, directory=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


ADAPTER_CONFIG = "adapter_config.json"
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""The original's LoRA targets: every projection of attention and MLP."""


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """The model's tokenizer, right-padded with EOS as pad (the original's convention)."""
    tokenizer = AutoTokenizer.from_pretrained(locked_path(path), padding_side="right")
    if tokenizer.eos_token_id is None:
        raise ConfigError(f"the tokenizer of {path} has no EOS token; the text format needs one", key="model")
    tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def quantization_config(bits: int | None, compute_dtype: torch.dtype) -> BitsAndBytesConfig | None:
    """bitsandbytes settings for a frozen k-bit base (QLoRA uses nf4 with double quantization)."""
    if bits is None:
        return None
    if bits == 4:
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        )
    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    raise ConfigError(f"load_in_bits must be 4, 8 or null, got {bits!r}", key="load_in_bits")


DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def resolve_dtype(name: str) -> torch.dtype:
    """A config dtype (`auto`, `float16`, `bfloat16`, `float32`) as a torch dtype.

    `auto` is bf16 on GPUs that have it (A100, H100), fp16 on older GPUs (a T4 has no
    bf16) and fp32 on CPU. fp16 on bf16 hardware risks overflow: its range ends at 65504,
    and Gemma-family activations are known to exceed it, giving inf and then NaN.
    """
    if name != "auto":
        return DTYPES[name]
    if not torch.cuda.is_available():
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def load_model(
    path: str | Path,
    *,
    pad_token_id: int,
    seed: int,
    dtype: torch.dtype = torch.float32,
    load_in_bits: int | None = None,
    device: torch.device | str = "cpu",
    attn_implementation: str | None = None,
) -> PreTrainedModel:
    """The sequence classifier (3 labels) of `path`, optionally k-bit (frozen, for QLoRA).

    Loading a causal-LM checkpoint as a sequence classifier creates a fresh `score` head;
    `seed` makes that head (and so every run) reproducible. Nothing is ever merged into the
    base here: a k-bit base would re-quantize the merged weights and erase most of an update.
    A hub id is loaded from its locked snapshot (`model_lock.locked_path`).
    """
    path = locked_path(path)
    torch.manual_seed(seed)
    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "pad_token_id": pad_token_id,
        "num_labels": len(LABELS),
        "id2label": dict(enumerate(LABELS)),
        "label2id": {v: i for i, v in enumerate(LABELS)},
        "attn_implementation": attention_implementation(path, attn_implementation),
    }
    quantization = quantization_config(load_in_bits, dtype)
    if quantization is not None:
        kwargs.update(quantization_config=quantization, device_map={"": str(device)})
    with named_load(path):
        model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
    if quantization is None:
        model.to(device)
    return model


def load_adapter(model: PreTrainedModel, adapter: str | Path) -> PeftModel:
    """`model` with the saved LoRA adapter at `adapter` (its score head included)."""
    with named_load(adapter):
        return PeftModel.from_pretrained(model, str(adapter))


def attention_implementation(path: str | Path, requested: str | None = None) -> str:
    """The attention kernel a model runs with: `requested`, else one that computes the
    model's attention exactly. Gemma-2 soft-caps its attention logits (tanh at 50), which
    PyTorch's SDPA kernel cannot do: some transformers releases pick SDPA anyway and drop
    the cap silently, so a soft-capped model gets `eager` by name (or `flex_attention`, exact
    too, when asked for) and SDPA asked for such a model is refused; others get `sdpa`."""
    config = AutoConfig.from_pretrained(locked_path(path))
    if requested == "sdpa" and getattr(config, "attn_logit_softcapping", None):
        raise ConfigError(f"sdpa cannot soft-cap the attention logits of {path}; use flex_attention or eager", key="attn_implementation")
    return requested or config_attention(config)


def config_attention(config: PretrainedConfig) -> str:
    """The exact attention kernel of a model config (see `attention_implementation`), for callers that
    hold the config but no weights."""
    return "eager" if getattr(config, "attn_logit_softcapping", None) else "sdpa"


def add_lora(
    model: PreTrainedModel,
    lora: Mapping[str, Any],
    gradient_checkpointing: bool = False,
    init_adapter: str | Path | None = None,
    kbit_upcast: bool = True,
) -> PeftModel:
    """Wrap `model` with a LoRA adapter described by a config `lora` block.

    For classification PEFT also trains and saves the `score` head in full. Extra modules
    listed in `modules_to_save` (the tiny default trains its embeddings: LoRA on random
    weights learns little otherwise) are trained in full too.

    The adapter starts fresh, or from `init_adapter` (the post-pretrained adapter of this
    model, as the original hands its UT LoRA to every fold run): its LoRA matrices and
    extra modules are loaded, its classification head is not, so the head starts from
    the seeded random init as in a fresh run.

    Trainable parameters are kept in float32 whatever the base's dtype: under bf16 a
    full-size module such as the head would otherwise round most Adam updates away.

    A k-bit base goes through PEFT's QLoRA preparation, which casts its frozen embeddings and
    norms to float32 (`kbit_upcast`, the original's way). bitsandbytes layers return their
    input's dtype, so the whole residual stream then runs in float32 and every element-wise
    op moves twice the bytes; `kbit_upcast=False` casts them back to the base's dtype and
    keeps the stream in bf16 (only the GEMMs ever ran in bf16 either way).
    """
    if gradient_checkpointing:
        model.config.use_cache = False  # a classifier keeps no KV cache; left on, every job warns about it
    if is_quantized(model):
        # Non-reentrant checkpointing on both paths: peft passes `{}` on, and torch's default is
        # still the reentrant kind, with a warning.
        loaded = {name: param.dtype for name, param in model.named_parameters()}
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gradient_checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False}
        )
        if not kbit_upcast:
            for name, param in model.named_parameters():
                if param.is_floating_point() and param.dtype != loaded[name]:
                    param.data = param.data.to(loaded[name])
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=lora["r"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora.get("dropout", 0.0),
        target_modules=list(lora.get("target_modules", DEFAULT_TARGETS)),
        modules_to_save=list(lora.get("modules_to_save", [])) or None,
    )
    model = get_peft_model(model, config)
    if init_adapter is not None:
        load_initial_lora(model, init_adapter)
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
    return model


HEAD_MODULES = ("score", "classifier")
"""Module names of sequence-classification heads (PEFT saves them with the adapter)."""


def is_head_key(key: str) -> bool:
    return any(part in HEAD_MODULES for part in key.split("."))


def lora_layout(config: PeftConfig) -> dict[str, Any]:
    """The settings of a LoRA config that shape or scale its tensors (heads left out)."""
    return {
        "r": config.r,
        "lora_alpha": config.lora_alpha,
        "target_modules": sorted(config.target_modules or []),
        "modules_to_save": sorted(set(config.modules_to_save or []) - set(HEAD_MODULES)),
    }


def load_initial_lora(model: PeftModel, adapter_dir: str | Path) -> None:
    """Copy `adapter_dir`'s LoRA and extra-module tensors into `model`'s fresh adapter.

    The settings that shape or scale the update must match the model's own `lora` block;
    a mismatch is a ConfigError naming the setting, never a silent partial load.
    """
    if not is_adapter(adapter_dir):
        raise ConfigError(f"{adapter_dir} is not a PEFT adapter directory (no {ADAPTER_CONFIG})", key="post_pretrained")
    saved, ours = lora_layout(PeftConfig.from_pretrained(str(adapter_dir))), lora_layout(model.peft_config["default"])
    for key, value in ours.items():
        if saved[key] != value:
            raise ConfigError(
                f"the initial adapter {adapter_dir} has {key}={saved[key]!r}, this model's lora block {value!r}", key=f"lora.{key}"
            )
    weights = {key: value for key, value in load_peft_weights(str(adapter_dir), device="cpu").items() if not is_head_key(key)}
    # peft loads wrapped modules only as a whole set: the head's keys carry its fresh values.
    weights.update({key: value for key, value in get_peft_model_state_dict(model).items() if is_head_key(key)})
    result = set_peft_model_state_dict(model, weights)
    if result.unexpected_keys:
        raise ConfigError(f"the initial adapter {adapter_dir} has tensors this model lacks, e.g. {result.unexpected_keys[0]}", key="lora")


def classifier_parts(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The decoder and the 3-way head of a sequence classifier, with or without its LoRA
    wrapper (PEFT injects the adapters into the decoder's layers and wraps the head in place,
    so calling the parts runs the adapted model)."""
    classifier = model.get_base_model() if isinstance(model, PeftModel) else model
    return getattr(classifier, classifier.base_model_prefix), classifier.score


def compile_layers(model: torch.nn.Module) -> None:
    """Compile each decoder layer in place (regional `torch.compile`): inductor fuses the
    element-wise work between the matrix products — norms, activations, rotary embeddings,
    LoRA's dropout, scale and add, casts — which in eager mode is one kernel (and one trip
    through memory) each. Compiling layers rather than the whole model compiles one layer's
    graph once for all of them, and leaves the loop, the head and PEFT's wrapper as they are."""
    decoder, _ = classifier_parts(model)
    for layer in decoder.layers:
        layer.compile()


def is_quantized(model: PreTrainedModel) -> bool:
    return bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False))


def for_inference(model: PeftModel) -> PreTrainedModel | PeftModel:
    """The adapter merged into its base, for scoring: same logits (to float rounding) at
    the base model's cost. A k-bit base keeps the adapter separate: merging would
    re-quantize the merged weights and change the logits."""
    if is_quantized(model.get_base_model()):
        return model
    return model.merge_and_unload()
