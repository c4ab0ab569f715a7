"""Fault injection: a long job killed (SIGKILL, with Snakemake) at a random point, then rerun,
leaves exactly what an uninterrupted run leaves: bitwise for training on CPU, identical tables
for scoring. Each case runs on its own copy of the finished tiny run, so the shared run keeps
its timestamps for the other tests."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import copy_of_run, snakemake

pytestmark = pytest.mark.workflow

# rule -> (target, the outputs compared with the uninterrupted run, the job's log)
JOBS = {
    "teacher_logits": (
        "results/teachers/qwen/fold1/logits/shard1.parquet",
        ["results/teachers/qwen/fold1/logits/shard1.parquet"],
        "results/logs/teacher_logits/qwen/fold1/shard1.log",
    ),
    "distill_student": (
        "results/student/fold1/adapter",
        ["results/student/fold1/adapter", "results/student/fold1/val_logits.parquet"],
        "results/logs/distill_student/student/fold1.log",
    ),
    "quantize_student": ("results/student/quantized", ["results/student/quantized"], "results/logs/quantize_student.log"),
    "predict": ("results/predictions/test.parquet", ["results/predictions/test.parquet"], "results/logs/predict.log"),
}


def snapshot(root: Path, outputs: list[str]) -> dict[str, object]:
    """Tables as frames (equal rows, not equal bytes: parquet metadata names the writer), JSON as
    values (PEFT writes `target_modules`, a set, in the process's hash order), every other
    file, the weights among them, as bytes."""
    files = [p for out in outputs for p in ([root / out] if (root / out).is_file() else sorted((root / out).rglob("*")))]
    return {str(p.relative_to(root)): read(p) for p in files if p.is_file()}


def read(path: Path) -> object:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".json":
        value = json.loads(path.read_text())
        if isinstance(value, dict) and isinstance(value.get("target_modules"), list):
            value["target_modules"] = sorted(value["target_modules"])
        return value
    return path.read_bytes()


def assert_same(before: dict, after: dict) -> None:
    assert sorted(before) == sorted(after)
    for name, value in before.items():
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(value, after[name], check_exact=True)
        else:
            assert value == after[name], f"{name} differs from the uninterrupted run's"


def killed_run(tiny_local_run: Path, dest: Path, rule: str, args: list[str], log: str, delay: float) -> Path | None:
    """A copy of the run whose `rule` job was SIGKILLed `delay` s after its log appeared, or
    None when the job finished first."""
    workdir = copy_of_run(tiny_local_run, dest)
    (workdir / log).unlink()
    job = subprocess.Popen(
        [str(Path(sys.executable).parent / "snakemake"), *args, "--forcerun", rule],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not (workdir / log).exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(delay)
    if job.poll() is not None:
        return None
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    return workdir


@pytest.mark.parametrize("rule", list(JOBS))
def test_a_job_killed_at_a_random_point_reruns_to_the_same_outputs(tiny_local_run, tmp_path, rule):
    """The kill lands a seeded random 0.5-4 s after the job's log appears; a job that ends
    sooner (its scoring takes a second or two on an idle machine) is run again and killed
    at half the delay, so the kill always hits a running job."""
    target, outputs, log = JOBS[rule]
    expected = snapshot(tiny_local_run, outputs)
    args = [target, "--profile", "profiles/local", "--cores", "1", "--configfile", "small.yaml"]
    delay = random.Random(rule).uniform(0.5, 4.0)
    for attempt in range(4):
        workdir = killed_run(tiny_local_run, tmp_path / f"run{attempt}", rule, args, log, delay)
        if workdir is not None:
            break
        delay /= 2
    else:
        pytest.fail(f"{rule} finished within {delay:.2f} s of its log four times: no running job to kill")
    print(f"{rule}: killed {delay:.1f} s after its log appeared")
    snakemake(workdir, *args, "--unlock")  # the killed run left its lock behind
    snakemake(workdir, *args)
    assert_same(expected, snapshot(workdir, outputs))
