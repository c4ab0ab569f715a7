"""The record of one benchmarks phase of `make gpu-check`: the empty bench every measurement
fills (also the flex warm-up's, which replays the comparisons), the session the measurements
share (deadline, side processes, the 9B student that (a) and (b) both use, the report line of
each entry as it is measured, `<out>/benchmarks.json` rewritten at each), and what of it counts
as a failure. Kept apart from the runners so that the side processes can build a bench without
importing the phase that starts them.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from arena_distill.gpu import projection, tables
from arena_distill.gpu.workload import random_model


def say(lines: Sequence[str]) -> None:
    """Report lines as they are measured: a run cut short still shows them."""
    print("\n".join(f"gpu-check: {line}" for line in lines), flush=True)


def empty_bench(gpu: str, peak: float | None) -> dict[str, Any]:
    return {
        "gpu": gpu,
        "peak_tflops": peak,
        "warmups": {},
        "student_predict": [],
        "student_train": [],
        "gradient_check": None,
        "teacher_predict": [],
        "teacher_train": [],
        "teacher_logit_diff": None,
        "gptq": None,
        "not_measured": [],
        "notes": [],
        "errors": [],
    }


@dataclass
class Session:
    """What the measurements of one benchmarks phase share: the numbers so far (written to
    `<out>/benchmarks.json` at each line), the deadline, the side processes, the 9B student
    that (a) and (b) both use."""

    bench: dict[str, Any]
    out: Path
    scratch: Path
    until: float
    sides: dict[str, subprocess.Popen]
    """The side processes; (e) adds its own, so that the check stops it with the others."""
    student: dict[str, torch.nn.Module] = field(default_factory=dict)

    @property
    def peak(self) -> float | None:
        return self.bench["peak_tflops"]

    def left(self) -> float:
        return self.until - time.monotonic()

    def emit(self, kind: str, entry: Mapping[str, Any]) -> None:
        say([tables.bench_row(kind, entry)])
        self.save()

    def save(self) -> None:
        (self.out / "benchmarks.json").write_text(json.dumps(self.bench, indent=1, default=str))

    def student_model(self) -> torch.nn.Module:
        if "model" not in self.student:
            self.student["model"] = random_model(projection.GEMMA2_9B, "gemma2", torch.device("cuda"), torch.bfloat16, "eager")
        return self.student["model"]


def bench_errors(bench: Mapping[str, Any]) -> list[str]:
    """What failed: a measurement's error, a gradient check that did not pass, a side process that exited with an error."""
    errors = [f"{kind}: {entry['error']}" for kind in tables.ROWS for entry in bench[kind] if "error" in entry]
    check = bench.get("gradient_check")
    if check and not check["passed"]:
        errors.append("gradient_check: flex and eager gradients differ beyond tolerance (or bf16 was not measured)")
    if (bench.get("gptq") or {}).get("error"):
        errors.append(f"gptq: {bench['gptq']['error']}")
    errors += [f"{name} warm-up: {found['error']}" for name, found in bench["warmups"].items() if found.get("error", "").startswith("exit")]
    return errors + bench["errors"]
