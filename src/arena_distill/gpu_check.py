"""`make gpu-check`: one command on one GPU that runs every CUDA-only code path of the
project and measures its speed, within about 8 minutes, with no network and no model hub.

    python -m arena_distill.gpu_check [--out results/gpu-check] [--budget 480]

Phases, each with its own time budget under one overall deadline (`arena_distill.gpu_phases`):

- environment: versions, the GPU, a real bitsandbytes NF4 matmul, nvcc, GPTQModel kernels;
- collectives: the training loop's collectives on an NCCL process group;
- workflow: the whole Snakemake workflow on the GPU with `config/gpu-smoke.yaml`;
- benchmarks: random-init models of the real configs (tokens/s, MFU, peak memory);
- projection: the preset's wall time per stage from the benchmarks.

A phase that fails is recorded as FAIL with its error and the next one still runs; the
command exits 1 if any failed. `<out>/summary.md` is the report, `<out>/results.json` the raw
numbers. Without CUDA (or without torch) it says "no GPU: skipped" and exits 0. This module
imports torch only once it knows torch is there, so that message needs nothing installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
BUDGET_SECONDS = 480.0
PHASE_BUDGETS = {"environment": 30.0, "collectives": 40.0, "workflow": 300.0, "benchmarks": 150.0, "projection": 5.0}
"""Seconds each phase may take; the benchmarks also stop at the overall deadline."""


@dataclass
class Result:
    """What one phase found: its lines for the summary and its numbers for results.json."""

    name: str
    status: str = PASS
    seconds: float = 0.0
    lines: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class Deadline:
    """Seconds left of the whole check; a phase gets its budget or what is left, whichever is less."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def budget(self, phase: str) -> float:
        return min(PHASE_BUDGETS[phase], self.left())


def run_phase(name: str, phase: Callable[[Result], None]) -> Result:
    """Run `phase`, which fills its Result; an exception makes it FAIL with the error."""
    result = Result(name)
    started = time.monotonic()
    try:
        phase(result)
    except Exception as error:  # a failed phase is reported, and the next phase runs
        result.status = FAIL
        result.error = f"{type(error).__name__}: {error}"
        result.data["traceback"] = traceback.format_exc()
    result.seconds = time.monotonic() - started
    print(
        f"gpu-check: {name} {result.status} in {result.seconds:.0f} s" + (f": {result.error}" if result.error else ""),
        flush=True,
    )
    return result


def write_summary(out: Path, header: list[str], results: list[Result]) -> Path:
    """`summary.md` (what a person reads) and `results.json` (every number) under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    overall = FAIL if any(r.status == FAIL for r in results) else PASS
    lines = ["# GPU check", "", *header]
    if results:
        lines += ["", f"**Overall: {overall}**", "", "| phase | status | seconds |", "|---|---|---|"]
        lines += [f"| {r.name} | {r.status} | {r.seconds:.0f} |" for r in results]
    for r in results:
        lines += ["", f"## {r.name}: {r.status} ({r.seconds:.0f} s)", ""]
        if r.error:
            lines += [f"Error: `{r.error}`", ""]
        lines += r.lines
    summary = out / "summary.md"
    summary.write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(
        json.dumps({"header": header, "phases": [asdict(r) for r in results]}, indent=1, default=str)
    )
    return summary


def no_gpu_reason() -> str | None:
    """Why this machine cannot run the check (no torch, or torch without a CUDA device), or None."""
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed"
    import torch

    if not torch.cuda.is_available():
        return f"torch {torch.__version__} (CUDA build: {torch.version.cuda or 'none'}) sees no CUDA device"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="GPU smoke test and benchmark of arena-distill")
    parser.add_argument("--out", type=Path, default=Path("results/gpu-check"))
    parser.add_argument("--budget", type=float, default=BUDGET_SECONDS, help="seconds for the whole check")
    args = parser.parse_args(argv)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    reason = no_gpu_reason()
    if reason is not None:
        print(f"no GPU: skipped ({reason})")
        write_summary(args.out, [f"{stamp}, {platform.node()}", "", f"no GPU: skipped ({reason})."], [])
        return 0
    # The workflow runs in its own directory: a relative PYTHONPATH (src:.gpu-bundle) must still hold there.
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    os.environ["PYTHONPATH"] = os.pathsep.join(str(Path(path).resolve()) for path in paths if path)
    # No machine of the check reaches the network: GPTQModel must not try to fetch CUTLASS.
    os.environ.setdefault("GPTQMODEL_OFFLINE", "1")
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    from arena_distill import gpu_phases

    started = time.monotonic()
    deadline = Deadline(args.budget)
    args.out.mkdir(parents=True, exist_ok=True)
    results = gpu_phases.run_all(args.out.resolve(), deadline, run_phase)
    header = [
        f"{stamp}, {platform.node()}, {gpu_phases.device_line()}",
        "",
        f"Budget {args.budget:.0f} s; took {time.monotonic() - started:.0f} s.",
    ]
    summary = write_summary(args.out, header, results)
    print(f"gpu-check: wrote {summary}")
    return 1 if any(r.status == FAIL for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
