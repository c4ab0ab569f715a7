"""What every phase of the GPU check shares: its result record, the check's deadline, running a
phase so that a failure is reported and the next phase still runs, and the subprocesses a phase
starts (in their own session, killed whole at their deadline). `check` plans and reports the
phases, `orchestration` runs them; both import this, neither the other at import time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arena_distill.workflow.config import WORKFLOW_DIR

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
REPO = WORKFLOW_DIR
SMOKE_CONFIG = "config/gpu-smoke.yaml"
PHASE_BUDGETS = {"workflow": 300.0, "environment": 30.0, "collectives": 30.0, "benchmarks": 275.0, "projection": 5.0}
"""Seconds each phase may take. The workflow's Snakemake runs in processes of its own while
the environment and collectives phases run in the check's (`BESIDE_WORKFLOW`): their budgets
lie inside the workflow's, and the check takes max(workflow, their sum) + benchmarks +
projection (`planned_seconds`). The benchmarks also get what the workflow leaves unused."""


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
