"""The processes `make gpu-check` runs beside the workflow, each writing `<out>/<name>.json`:
GPTQModel's kernel build and the export of the GPTQ benchmark model (`gptq_bench.warm_gptq`),
the flex_attention kernels of the benchmarks (`warm_flex`), and later (e) itself. The flex
warm-up compiles on a narrow model with gemma-2-9b's attention into inductor's on-disk cache by
the same calls in the same order as the benchmarks: the first call's graph is compiled for its
shape and every later one for any length, so the benchmarks find each graph compiled.

    python -m arena_distill.gpu.side_processes <name> <out> <scratch>

A module of its own because it is an entry point: what it imports is what a side process loads.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from arena_distill.gpu import projection
from arena_distill.gpu.bench_session import empty_bench
from arena_distill.gpu.gptq_bench import gptq_benchmark, warm_gptq
from arena_distill.gpu.gradient_check import CHECK_LAYERS, gradient_check
from arena_distill.gpu.harness import REPO, start_logged, wait_or_kill
from arena_distill.gpu.speed_comparisons import student_cases, student_prediction, student_training
from arena_distill.gpu.workload import PRESET_LORA, flex_graphs, many_compiles, preset_settings, random_model
from arena_distill.modeling.models import add_lora

NARROW = {"hidden_size": 512, "intermediate_size": 1024, "vocab_size": 1024}
"""gemma-2-9b's attention (heads, head_dim, soft-cap, scaling) on narrow layers: the flex warm-up's
model compiles the graphs the full model runs, in a fraction of the memory and time."""


def warm_flex(out: Path, scratch: Path) -> dict[str, Any]:
    """The flex_attention graphs of (a), (b) and (c), compiled beside the workflow into inductor's
    on-disk cache by the same calls on a narrow model with gemma-2-9b's attention (the graphs depend
    on heads, head_dim, dtype and soft-cap, not on widths); the benchmarks then load them instead of
    compiling. Its seconds are FlexAttention's compile time on first use, as a job pays it."""
    settings, device = preset_settings(), torch.device("cuda")
    narrow = {**projection.GEMMA2_9B, **NARROW}
    bench = empty_bench("flex warm-up", None)
    entry: dict[str, Any] = {"seconds": {}}
    ignore, forever = (lambda kind, found: None), (lambda: float("inf"))
    started = time.perf_counter()
    with many_compiles():
        model = random_model(narrow, "gemma2", device, torch.bfloat16, "eager")
        lengths = (settings["train_length"], settings["test_length"])
        student_prediction(bench, model, None, ignore, forever, lengths, ("flex_attention",))
        entry["seconds"]["scoring"] = time.perf_counter() - started
        model = add_lora(model, PRESET_LORA)
        flex_cases = [case for case in student_cases() if case.attn == "flex_attention"]
        student_training(bench, model, None, ignore, forever, scratch / "flex-warm", flex_cases, settings["train_length"])
        entry["seconds"]["training"] = time.perf_counter() - started - entry["seconds"]["scoring"]
        clock = time.perf_counter()
        check = gradient_check(device, narrow, "gemma2", CHECK_LAYERS, settings["train_length"], settings["student_tokens"])
        entry["seconds"]["gradient check"] = time.perf_counter() - clock
    entry["graphs"] = flex_graphs()
    entry["errors"] = [found["error"] for kind in ("student_predict", "student_train") for found in bench[kind] if "error" in found]
    entry["errors"] += [f"{dtype}: {found['error']}" for dtype, found in check["dtypes"].items() if "error" in found]
    (out / "warm-flex.json").write_text(json.dumps(entry, indent=1))
    return entry


SIDE_PROCESSES: dict[str, Callable[[Path, Path], dict[str, Any]]] = {"warm-gptq": warm_gptq, "warm-flex": warm_flex, "gptq": gptq_benchmark}
"""What runs in a process of its own, each writing `<out>/<name>.json`: GPTQModel's kernels and
export state, and the compile workers, stay out of the check's process."""


def start_side(name: str, out: Path, scratch: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "arena_distill.gpu.side_processes", name, str(out), str(scratch)]
    return start_logged(command, REPO, out / f"{name}.log")


def finish_side(process: subprocess.Popen, out: Path, name: str, timeout: float) -> dict[str, Any]:
    """Wait up to `timeout` s for a side process (killed past it); what it wrote, or its error."""
    code = wait_or_kill(process, timeout)
    if code is None:
        return {"error": f"still running after the wait, stopped; see {name}.log"}
    if code != 0:
        return {"error": f"exit {code}, see {name}.log"}
    return json.loads((out / f"{name}.json").read_text())


if __name__ == "__main__" and sys.argv[1:2] and sys.argv[1] in SIDE_PROCESSES:
    SIDE_PROCESSES[sys.argv[1]](Path(sys.argv[2]), Path(sys.argv[3]))
