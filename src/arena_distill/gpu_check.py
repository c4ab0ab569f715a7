"""`make gpu-check`: one command on one GPU that runs every CUDA-only code path of the
project and measures its speed, within 10 minutes, with no network and no model hub.

    python -m arena_distill.gpu_check [--out results/gpu-check] [--budget 585] [--plan]

Phases, each with its own time budget under one overall deadline (`schedule` has the timeline;
`--plan` prints it, and every benchmark measurement planned, on any machine):

- workflow: the whole Snakemake workflow on the GPU with `config/gpu-smoke.yaml`, in processes
  of its own from the first second; beside it, in the check's process:
- environment: versions, the GPU, a real bitsandbytes NF4 matmul, nvcc, GPTQModel kernels;
- collectives: the training loop's collectives on an NCCL process group;
- benchmarks: random-init models of the real configs on rows of the real arena lengths, each
  new path against today's (`arena_distill.gpu_benchmarks`, in the order of `MEASUREMENTS`);
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
import signal
import subprocess
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
REPO = Path(__file__).resolve().parents[2]
SMOKE_CONFIG = "config/gpu-smoke.yaml"
PRESET = REPO / "config" / "presets" / "blackpearl.yaml"
RUN_LIMIT = 600.0
"""Seconds a GPU session's command may run; the check's own budget stays under it."""
BUDGET_SECONDS = 585.0
"""The check's deadline, from its first line: the plan's 580 s and a few for the summary."""
PHASE_BUDGETS = {"workflow": 300.0, "environment": 30.0, "collectives": 30.0, "benchmarks": 275.0, "projection": 5.0}
"""Seconds each phase may take. The workflow's Snakemake runs in processes of its own while
the environment and collectives phases run in the check's (`BESIDE_WORKFLOW`): their budgets
lie inside the workflow's, and the check takes max(workflow, their sum) + benchmarks +
projection (`planned_seconds`). The benchmarks also get what the workflow leaves unused."""
BESIDE_WORKFLOW = ("environment", "collectives")


@dataclass(frozen=True)
class Measurement:
    """One benchmark measurement: which comparison of the plan it makes, and the seconds it
    is planned to take on an H100 once the flex warm-up (beside the workflow) compiled its kernels."""

    key: str
    comparison: str
    what: str
    seconds: float


MEASUREMENTS = (
    Measurement(
        "student_predict",
        "a",
        "gemma-2-9b bf16 scoring at 1,024 and 2,000 tokens: eager (today) vs flex_attention; "
        "tokens/s, MFU, peak GiB, largest logit difference",
        45.0,
    ),
    Measurement(
        "student_train",
        "b",
        "gemma-2-9b bf16 + LoRA r64 training, no checkpointing, 8 real-length rows a step: "
        "padded eager micro-batches of 2 (today) vs packed flex 2,048 (the preset) vs packed eager 2,048 vs "
        "packed flex 4,096",
        60.0,
    ),
    Measurement(
        "gradient_check",
        "c",
        "flex vs eager LoRA/head gradients and logits: gemma-2-9b cut to 2 layers, one packed "
        "batch, fp32 and bf16 against the fp32 eager gradient",
        25.0,
    ),
    Measurement(
        "teacher",
        "d",
        "Llama-3-70B shape cut to 4 layers, NF4: scoring at 1,024; QLoRA packed 4,096, SDPA, "
        "checkpointing, kbit_upcast on (today) vs off; the largest logit difference between them",
        60.0,
    ),
    Measurement(
        "gptq",
        "e",
        "GPTQ int8 vs its bf16 merge, gemma-2-9b cut to 1 layer, scored with flex_attention at 2,000 "
        "tokens as the submission is, in a process of its own",
        50.0,
    ),
)
"""The benchmark measurements in order of priority. Each starts only with its planned seconds
left before the benchmarks' deadline, so a run cut short still reports the ones before it."""


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
    """Seconds left of the whole check: no phase runs past it."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())


def run_phase(name: str, phase: Callable[[Result], None], started: float | None = None) -> Result:
    """Run `phase`, which fills its Result; an exception makes it FAIL with the error. A phase
    that began before this call (the workflow, started at the check's start) gives `started`."""
    result = Result(name)
    started = time.monotonic() if started is None else started
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


def start_logged(command: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    """`command` in a session of its own (so its whole process group can be killed), into `log`."""
    with log.open("w") as out:
        return subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_or_kill(process: subprocess.Popen, timeout: float) -> int | None:
    """The exit code of `process`, or None when it ran past `timeout` s and its group was killed."""
    try:
        return process.wait(timeout=max(timeout, 0.0))
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return None


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
    from arena_distill import gpu_phases

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
