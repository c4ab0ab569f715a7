"""Runs every phase of `make gpu-check` (`check` plans and reports them) under the check's
deadline. Each phase is a plain function in a module of its own (`environment`, `collectives`,
`smoke_workflow`, `benchmarks_phase`, `projection_phase`) that fills a Result and raises when
what it checks does not hold; this module only starts them in their order, with the workflow
and the side processes in processes of their own, and stops whatever still runs at the end.

The phases call the project's own code (`train`, `start_run`/`optimizer_step`, `add_lora`,
`load_model`, `predict_logits`, `quantize_model`, `load_classifier` and the Snakemake workflow),
so what passes here is what the cluster runs.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from arena_distill.gpu.benchmarks_phase import benchmarks_phase
from arena_distill.gpu.collectives import collectives_phase
from arena_distill.gpu.environment import environment_phase
from arena_distill.gpu.harness import PHASE_BUDGETS, Deadline, Result
from arena_distill.gpu.projection_phase import projection_phase
from arena_distill.gpu.side_processes import start_side
from arena_distill.gpu.smoke_workflow import start_workflow, workflow_phase
from arena_distill.gpu.workload import scratch_dir


def run_all(out: Path, deadline: Deadline, run_phase: Callable[..., Result]) -> list[Result]:
    """Every phase (`check.schedule`): the workflow's Snakemake from the first second, with
    GPTQModel's kernel build and the flex warm-up beside it, the environment and collectives
    phases in this process meanwhile; then the benchmarks, until the projection's budget before
    the deadline, and the projection."""
    scratch = scratch_dir()
    sides = {name: start_side(name, out, Path(scratch.name)) for name in ("warm-gptq", "warm-flex")}
    started = time.monotonic()
    workflow, command = start_workflow(out / "workflow")
    try:
        results = [
            run_phase("environment", environment_phase),
            run_phase("collectives", lambda r: collectives_phase(r, out / "collectives")),
        ]
        timeout = min(PHASE_BUDGETS["workflow"] - (time.monotonic() - started), deadline.left())
        results.append(run_phase("workflow", lambda r: workflow_phase(r, workflow, command, out / "workflow", timeout), started))
        until = time.monotonic() + deadline.left() - PHASE_BUDGETS["projection"]
        measured = run_phase("benchmarks", lambda r: benchmarks_phase(r, out, Path(scratch.name), until, sides))
        results += [measured, run_phase("projection", lambda r: projection_phase(r, measured.data.get("bench")))]
    finally:
        for process in (workflow, *sides.values()):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        scratch.cleanup()
    return results
