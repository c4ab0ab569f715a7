"""`make gpu-check`: one command on one GPU that runs every CUDA-only code path of the
project and measures its speed, within 10 minutes, with no network and no model hub.

    python -m arena_distill.gpu.check [--out results/gpu-check] [--budget 585] [--plan]

Phases, each with its own time budget under one overall deadline (`schedule` has the timeline;
`--plan` prints it, and every benchmark measurement planned, on any machine):

- workflow: the whole Snakemake workflow on the GPU with `config/gpu-smoke.yaml`, in processes
  of its own from the first second; beside it, in the check's process:
- environment: versions, the GPU, a real bitsandbytes NF4 matmul, nvcc, GPTQModel kernels;
- collectives: the training loop's collectives on an NCCL process group;
- benchmarks: random-init models of the real configs on rows of the real arena lengths, each
  new path against today's (`arena_distill.gpu.benchmarks_phase`, in the order of `MEASUREMENTS`);
- projection: the preset's wall time per stage from the benchmarks.

A phase that fails is recorded as FAIL with its error and the next one still runs; the
command exits 1 if any failed. `<out>/summary.md` is the report, `<out>/results.json` the raw
numbers; every benchmark line is printed as it is measured. Without CUDA (or without torch) it
says "no GPU: skipped" and exits 0. This module imports torch only once it knows torch is
there, so that message and the plan need nothing installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from arena_distill.gpu.harness import FAIL, MEASUREMENTS, PASS, PHASE_BUDGETS, Deadline, Result, run_phase

RUN_LIMIT = 600.0
"""Seconds a GPU session's command may run; the check's own budget stays under it."""
BUDGET_SECONDS = 585.0
"""The check's deadline, from its first line: the plan's 580 s and a few for the summary."""
BESIDE_WORKFLOW = ("environment", "collectives")


def schedule() -> list[tuple[str, float, float]]:
    """(phase, planned start, planned end) in seconds from the check's start, in the order they start."""
    rows = [("workflow", 0.0, PHASE_BUDGETS["workflow"])]
    beside = 0.0
    for phase in BESIDE_WORKFLOW:
        rows.append((phase, beside, beside + PHASE_BUDGETS[phase]))
        beside += PHASE_BUDGETS[phase]
    clock = max(PHASE_BUDGETS["workflow"], beside)
    for phase in ("benchmarks", "projection"):
        rows.append((phase, clock, clock + PHASE_BUDGETS[phase]))
        clock += PHASE_BUDGETS[phase]
    return rows


def planned_seconds() -> float:
    return max(end for _, _, end in schedule())


def plan_lines() -> list[str]:
    """The timeline of the phases and the benchmark measurements in the order they run."""
    lines = [
        f"gpu-check plan: {planned_seconds():.0f} s of phases in a {BUDGET_SECONDS:.0f} s budget "
        f"(a GPU session's command may run {RUN_LIMIT:.0f} s)",
        "",
        "| phase | start s | end s | budget s |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {phase}{' (beside the workflow)' if phase in BESIDE_WORKFLOW else ''} | {start:.0f} | {end:.0f} | {PHASE_BUDGETS[phase]:.0f} |"
        for phase, start, end in schedule()
    ]
    clock = dict((phase, start) for phase, start, _ in schedule())["benchmarks"]
    lines += [
        "",
        "Beside the workflow: GPTQModel's kernels build and the GPTQ benchmark model is exported; the "
        "flex_attention kernels the benchmarks use compile (narrow model, same attention).",
        "",
        "| comparison | measurement | planned s | ends at s | what |",
        "|---|---|---|---|---|",
    ]
    for measurement in MEASUREMENTS:
        clock += measurement.seconds
        lines.append(f"| {measurement.comparison} | {measurement.key} | {measurement.seconds:.0f} | {clock:.0f} | {measurement.what} |")
    return lines


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
    (out / "results.json").write_text(json.dumps({"header": header, "phases": [asdict(r) for r in results]}, indent=1, default=str))
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
    parser.add_argument("--plan", action="store_true", help="print the phases and benchmark measurements planned, run nothing")
    args = parser.parse_args(argv)
    if args.plan:
        print("\n".join(plan_lines()))
        return 0
    started = time.monotonic()
    deadline = Deadline(args.budget)  # from the first line: imports and the workflow's set-up count
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
    from arena_distill.gpu import environment, orchestration

    args.out.mkdir(parents=True, exist_ok=True)
    results = orchestration.run_all(args.out.resolve(), deadline, run_phase)
    header = [
        f"{stamp}, {platform.node()}, {environment.device_line()}",
        "",
        f"Budget {args.budget:.0f} s; took {time.monotonic() - started:.0f} s.",
    ]
    summary = write_summary(args.out, header, results)
    print(f"gpu-check: wrote {summary}")
    return 1 if any(r.status == FAIL for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
