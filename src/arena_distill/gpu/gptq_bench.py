"""Comparison (e) of `make gpu-check` and its warm-up, both run in processes of their own
(`side_processes`): the export of a one-layer gemma-2-9b through the project's GPTQ 8-bit path,
and its bf16 merge against the GPTQ export, each loaded by `load_classifier` and scored as the
submission is. GPTQModel's JIT kernel build, its export state and its imports stay out of the
check's process, and out of every other module of the benchmarks.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from arena_distill.gpu import projection
from arena_distill.gpu.harness import REPO, SMOKE_CONFIG
from arena_distill.gpu.speed import first_rows, predict_speed
from arena_distill.gpu.workload import PREDICT_ROWS, many_compiles, preset_settings, real_rows, save_random, scratch_dir
from arena_distill.modeling import flops
from arena_distill.modeling.inference import predict_logits
from arena_distill.workflow.config import PRESET

GPTQ_LAYERS = 1
GPTQ_REPEATS = 5


def sample_tokenizer(rows: int) -> tuple[list[str], Any]:
    """Formatted pairs of the bundled sample and a BPE tokenizer trained on them: GPTQ
    calibrates on real text, as `quantize_student` does."""
    from arena_distill.data.text import format_pair
    from arena_distill.modeling.tokenizer import train_bpe_tokenizer

    frame = pd.read_parquet(REPO / "data/sample/train.parquet").head(rows)
    texts = [format_pair(*map(json.loads, row)) for row in frame[["prompt", "response_a", "response_b"]].itertuples(index=False)]
    return texts, train_bpe_tokenizer(texts, vocab_size=4000)


def export_gptq(config: Mapping[str, Any], layers: int, directory: Path, rows: int, seqlen: int, device: torch.device) -> float:
    """A random-init Gemma-2 of `config` cut to `layers` layers, saved in bf16 (`directory/merged`)
    and exported through the project's GPTQ 8-bit path (`directory/gptq`); returns the export's seconds."""
    from arena_distill.export.quantize import quantize_model

    texts, tokenizer = sample_tokenizer(rows)
    merged = directory / "merged"
    save_random({**config, "pad_token_id": tokenizer.eos_token_id}, "gemma2", merged, layers, device, vocab=len(tokenizer))
    tokenizer.save_pretrained(merged)
    started = time.perf_counter()
    quantize_model(merged, directory / "gptq", method="gptq", bits=8, group_size=128, calibration_texts=texts[:32], model_seqlen=seqlen)
    return time.perf_counter() - started


def gptq_kernels(model: torch.nn.Module) -> list[str]:
    """The GPTQModel layer classes a loaded model runs (MarlinLinear, TritonV2Linear, ...)."""
    return sorted({type(m).__name__ for m in model.modules() if type(m).__module__.startswith("gptqmodel")})


def warm_gptq(out: Path, scratch: Path) -> dict[str, Any]:
    """Export and load a one-layer model at the smoke student's widths, as `quantize_student` and
    `predict` do, so that GPTQModel builds its JIT kernels (CPU packing, then Marlin: minutes on a
    fresh machine) into its cache while the workflow's first jobs run; its GPTQ jobs then wait on
    GPTQModel's build lock, not on a build of their own. Then export the GPTQ benchmark's model into
    `scratch`, so that (e) only loads and scores."""
    from arena_distill.serving.prediction import load_classifier

    device = torch.device("cuda")
    smoke = yaml.safe_load((REPO / SMOKE_CONFIG).read_text())
    started = time.perf_counter()
    with scratch_dir() as tmp:
        export_gptq(smoke["student"]["tiny"], 1, Path(tmp), rows=40, seqlen=256, device=device)
        model, _ = load_classifier(Path(tmp) / "gptq")
        pad_id = model.config.pad_token_id
        predict_logits(model, real_rows(4, 64, model.config.vocab_size, 0, pad_id), pad_id=pad_id, max_tokens=4096)
        entry: dict[str, Any] = {"seconds": time.perf_counter() - started, "kernels": gptq_kernels(model)}
    (out / "warm-gptq.json").write_text(json.dumps(entry, indent=1))
    entry["export_seconds"] = export_gptq(projection.GEMMA2_9B, GPTQ_LAYERS, scratch / "gptq-bench", 400, 1024, device)
    (out / "warm-gptq.json").write_text(json.dumps(entry, indent=1))
    return entry


def gptq_benchmark(out: Path, scratch: Path) -> dict[str, Any]:
    """(e) gemma-2-9b cut to one layer (and a small vocabulary): its bf16 merge against its GPTQ
    8-bit export, each loaded by `load_classifier` with the attention the preset predicts with and
    scored at the test length, as the submission is. The full model's GPTQ speed is its bf16
    speed times this ratio. Exports the model itself when the warm-up did not."""
    from arena_distill.serving.prediction import load_classifier

    settings, device = preset_settings(), torch.device("cuda")
    attn = yaml.safe_load(PRESET.read_text())["predict"]["attn_implementation"]
    directory = scratch / "gptq-bench"
    entry: dict[str, Any] = {"layers": GPTQ_LAYERS, "attn": attn, "max_length": settings["test_length"]}
    warm = out / "warm-gptq.json"
    if not (warm.is_file() and "export_seconds" in json.loads(warm.read_text())):  # the warm-up's export did not finish
        shutil.rmtree(directory, ignore_errors=True)
        entry["export_seconds"] = export_gptq(projection.GEMMA2_9B, GPTQ_LAYERS, directory, rows=400, seqlen=1024, device=device)
    peak = flops.peak_tflops(torch.cuda.get_device_name(0))
    shape = flops.Shape.of({**projection.GEMMA2_9B, "num_hidden_layers": GPTQ_LAYERS})
    logits = {}
    with many_compiles():
        for name in ("bf16", "gptq"):
            model, _ = load_classifier(directory / ("merged" if name == "bf16" else "gptq"), attention=attn)
            vocab, pad_id = model.config.vocab_size, model.config.pad_token_id
            if name == "bf16":  # (a)'s first flex call again: its graph is cached, and every later one is for any length
                replay = real_rows(PREDICT_ROWS, settings["train_length"], vocab, settings["train_length"], pad_id)
                lengths = [len(row) for row in replay]
                predict_logits(
                    model,
                    [replay[i] for i in first_rows(lengths, settings["max_tokens"])],
                    pad_id=pad_id,
                    max_tokens=settings["max_tokens"],
                )
            sequences = real_rows(PREDICT_ROWS, settings["test_length"], vocab, settings["test_length"], pad_id)
            entry[name], logits[name] = predict_speed(model, shape, sequences, peak, settings["max_tokens"], repeats=GPTQ_REPEATS)
            entry[name]["dtype"] = str(next(model.parameters()).dtype)
            if name == "gptq":
                entry["kernels"] = gptq_kernels(model)
            del model
            torch.cuda.empty_cache()
    failed = [f"{name}: {entry[name]['error']}" for name in ("bf16", "gptq") if "error" in entry[name]]
    if failed:
        entry["error"] = "; ".join(failed)
    else:
        entry["max_abs_logit_diff"] = float(np.abs(logits["gptq"] - logits["bf16"]).max())
    (out / "gptq.json").write_text(json.dumps(entry, indent=1))
    return entry
