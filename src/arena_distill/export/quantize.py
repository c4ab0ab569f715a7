"""Quantizing the merged student for inference.

`gptq` (the original: 8-bit, calibrated on formatted training texts) goes through
transformers' `GPTQConfig`, whose GPTQModel backend writes a checkpoint that
`AutoModelForSequenceClassification.from_pretrained` loads with no extra code. `bnb` stores
bitsandbytes int8 (or nf4) weights, a calibration-free fallback. `none` copies the merged
model. The classification head is never quantized: GPTQ works on the decoder blocks only.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, GPTQConfig, PreTrainedTokenizerBase

from arena_distill import INFERENCE_FILE
from arena_distill.errors import ConfigError
from arena_distill.export.model_card import model_card
from arena_distill.io import atomic_path
from arena_distill.modeling.models import attention_implementation, load_tokenizer, quantization_config, resolve_dtype

METHODS = ("gptq", "bnb", "none")


def quantize_model(
    merged_dir: str | Path,
    out_dir: str | Path,
    *,
    method: str,
    bits: int,
    group_size: int = 128,
    calibration_texts: Sequence[str] = (),
    model_seqlen: int | None = None,
    dtype: str = "auto",
    inference: Mapping[str, Any] | None = None,
    recipe: Mapping[str, Any] | None = None,
) -> dict:
    """Quantize the model at `merged_dir` into `out_dir`; returns what was done.

    `dtype` is the precision the model is calibrated and exported in (`auto`: bf16 on GPUs
    that have it, fp16 on a T4, fp32 on CPU); prediction loads it in the same dtype.

    `inference` (text budgets and prediction settings) is saved beside the weights as
    `inference.json`, so whoever serves the model scores pairs the way the run did; with the
    run's `recipe` a model card (`README.md`, `arena_distill.export.model_card`) goes beside them.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown quantization method {method!r}; choose from {list(METHODS)}", key="quantize.method")
    tokenizer = load_tokenizer(merged_dir)
    if method == "none":
        summary = {"method": "none"}
        with atomic_path(out_dir, directory=True) as tmp:
            shutil.copytree(merged_dir, tmp, dirs_exist_ok=True)
            write_inference(tmp, inference)
            write_card(tmp, recipe, summary)
        return summary
    if method == "gptq":
        model = gptq_quantize(merged_dir, tokenizer, bits, group_size, calibration_texts, model_seqlen, resolve_dtype(dtype))
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            merged_dir, quantization_config=quantization_config(bits, resolve_dtype(dtype)), device_map={"": device_name()}
        )
    summary = {
        "method": method,
        "bits": bits,
        "dtype": str(model.dtype).removeprefix("torch."),
        "group_size": group_size if method == "gptq" else None,
        "calibration_texts": len(calibration_texts) if method == "gptq" else 0,
    }
    with atomic_path(out_dir, directory=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_inference(tmp, inference)
        write_card(tmp, recipe, summary)
    return summary


def gptq_quantize(
    merged_dir,
    tokenizer: PreTrainedTokenizerBase,
    bits: int,
    group_size: int,
    texts: Sequence[str],
    model_seqlen: int | None = None,
    dtype: torch.dtype = torch.float32,
):
    """GPTQ through transformers; `model_seqlen` caps the calibration sequences (the original: 2100).

    Calibration runs in `dtype`: an inf in an fp16 activation would reach the Hessian and
    break its Cholesky factorization, so bf16 hardware calibrates in bf16.
    """
    if bits not in (4, 8):
        raise ConfigError(f"GPTQ bits must be 4 or 8, got {bits!r}", key="quantize.bits")
    if not texts:
        raise ConfigError("GPTQ needs calibration texts; set quantize.n_calibration > 0", key="quantize.n_calibration")
    config = GPTQConfig(bits=bits, group_size=group_size, dataset=list(texts), tokenizer=tokenizer, batch_size=1, model_seqlen=model_seqlen)
    return AutoModelForSequenceClassification.from_pretrained(
        merged_dir,
        quantization_config=config,
        device_map={"": device_name()},
        attn_implementation=attention_implementation(merged_dir),
        dtype=dtype,
    )


def write_inference(model_dir: Path, inference: Mapping[str, Any] | None) -> None:
    if inference is not None:
        (model_dir / INFERENCE_FILE).write_text(json.dumps(inference, indent=1))


def write_card(model_dir: Path, recipe: Mapping[str, Any] | None, summary: Mapping[str, Any]) -> None:
    if recipe is not None:
        (model_dir / "README.md").write_text(model_card(recipe, summary))


def device_name() -> str:
    return "cuda:0" if torch.cuda.is_available() else "cpu"
