"""The environment phase of `make gpu-check`: what the machine is (GPU, driver, CUDA, nvcc, the
versions of the packages the project runs on), which of the modules the workflow needs fail to
import, GPTQModel's compiled kernels, and one real bitsandbytes NF4 matmul on the GPU checked
against its own dequantized weight. A probe of the machine, not of the project's code, so it
runs first and apart from every phase that trains or scores.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import torch

from arena_distill.gpu.harness import Result

CORE_PACKAGES = (
    "transformers",
    "peft",
    "accelerate",
    "bitsandbytes",
    "gptqmodel",
    "optimum",
    "snakemake",
    "tokenizers",
)
REQUIRED_MODULES = (*CORE_PACKAGES, "safetensors", "pandas", "pyarrow", "sklearn", "jsonschema", "yaml")
VERSIONED = ("torch", *CORE_PACKAGES, "numpy", "pandas")


def device_line() -> str:
    props = torch.cuda.get_device_properties(0)
    return f"{props.name} ({props.total_memory / 2**30:.0f} GiB), torch {torch.__version__}, CUDA {torch.version.cuda}"


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def command_output(*command: str) -> str | None:
    """First line of a command's output, None when it is missing or fails."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def nf4_matmul_error() -> tuple[float, float]:
    """A bitsandbytes NF4 layer on the GPU: (relative error against its own dequantized
    weight, which must be rounding only; relative error against the bf16 weight, the
    quantization error itself)."""
    import bitsandbytes as bnb

    torch.manual_seed(0)
    layer = bnb.nn.Linear4bit(1024, 1024, bias=False, compute_dtype=torch.bfloat16, quant_type="nf4")
    weight = layer.weight.data.clone()
    layer = layer.cuda()  # quantizes
    x = torch.randn(64, 1024, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        y = layer(x).float()
        dequantized = bnb.functional.dequantize_4bit(layer.weight.data, layer.weight.quant_state).float()
    exact = x.float() @ dequantized.t()
    original = x.float() @ weight.cuda().float().t()
    return float((y - exact).norm() / exact.norm()), float((y - original).norm() / original.norm())


def gptq_kernel_cache() -> tuple[Path, list[str]]:
    """GPTQModel's JIT kernel cache and the compiled kernels in it (none: first use compiles)."""
    root = Path(os.environ.get("GPTQMODEL_TORCH_EXTENSIONS_DIR") or Path.home() / ".cache/gptqmodel/torch_extensions")
    return root, sorted(p.name for p in root.rglob("*.so")) if root.is_dir() else []


def environment_phase(result: Result) -> None:
    props = torch.cuda.get_device_properties(0)
    facts = {
        "python": sys.version.split()[0],
        "gpu": props.name,
        "memory_gib": round(props.total_memory / 2**30, 1),
        "compute_capability": f"{props.major}.{props.minor}",
        "torch_cuda": torch.version.cuda,
        "driver": command_output("nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"),
        "bf16": torch.cuda.is_bf16_supported(),
        "nccl": ".".join(map(str, torch.cuda.nccl.version())),
        "nvcc": command_output("nvcc", "--version"),
        **{f"version {name}": version(name) for name in VERSIONED},
    }
    failed = {}
    for module in REQUIRED_MODULES:
        try:
            importlib.import_module(module)
        except Exception as error:  # any import failure is a finding, whatever its type
            failed[module] = f"{type(error).__name__}: {error}"
    cache, kernels = gptq_kernel_cache()
    facts["gptq kernel cache"] = f"{cache}: {', '.join(kernels) or 'no compiled kernels (compiled on first use)'}"
    facts["GPTQMODEL_OFFLINE"] = os.environ.get("GPTQMODEL_OFFLINE")
    result.data.update(facts=facts, failed_imports=failed)
    result.lines += ["| item | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in facts.items())]
    result.lines += ["", "Imports that fail: " + (", ".join(f"{m} ({e})" for m, e in failed.items()) or "none")]
    print("gpu-check: imports that fail:", ", ".join(failed) or "none", flush=True)
    if "bitsandbytes" not in failed:
        own, quantization = nf4_matmul_error()
        result.data["nf4"] = {"vs_dequantized": own, "vs_bf16": quantization}
        result.lines.append(
            f"NF4 matmul on the GPU: relative error {own:.2e} against its dequantized weight, "
            f"{quantization:.3f} against the bf16 weight (the 4-bit rounding)"
        )
        if not own < 2e-2:
            raise RuntimeError(f"bitsandbytes NF4 matmul disagrees with its own dequantized weight ({own:.3g})")
    if failed:
        raise RuntimeError(f"modules that do not import: {', '.join(failed)}")
