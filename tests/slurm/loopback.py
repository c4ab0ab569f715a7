"""The loopback cluster and the runs on it, shared by the SLURM tests and the session.

A run through SLURM mostly waits: the executor plugin sleeps 5 s before every `sbatch` and
polls ever more slowly while no job ends. `TinyDagOnSlurm` brings the cluster up when the
session starts and, in a background thread, so those waits overlap the other tests: submits
the tiny DAG; starts the driver environment's Snakemake (`make driver`) inside an `sbatch`
allocation and has it build the folds of a second copy; then plays the two scenarios that
change the finished run (one fold rebuilt through a requeue, one fold failing and rerun).
The SLURM tests, which run last, read what each left and assert on it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tests.conftest import REPO
from tests.tiny import N_FOLDS, tiny_workflow

CLUSTER = Path(__file__).with_name("cluster.sh")
OVERLAY = Path(__file__).with_name("profile")
RUN_LIMIT_S = 1500
DRIVER_ENV = REPO / ".venv-driver"
"""`make driver`'s environment: Snakemake and plugin 2.7.1, no model libraries."""
DRIVER_TARGET = "results/folds/folds_clean.json"
"""What the driver inside an allocation builds: the data and fold rules, local rules included."""
REQUEUED_JOB = "rule_train_teacher_wildcards_llama_1"
"""The job the rebuild scenario requeues: llama's fold-1 teacher."""
SHARD_TARGETS = [f"results/teachers/qwen/fold{fold}/logits/shard0.parquet" for fold in range(N_FOLDS)]
"""What the failed-fold scenario rescores: one shard of each fold of qwen."""


@dataclass
class Run:
    """One Snakemake invocation through SLURM: its output and the run id its jobs are named by."""

    returncode: int
    stdout: str
    run_id: str


def missing_cluster_reason() -> str | None:
    if os.geteuid() == 0:
        return None
    return "the loopback cluster (tests/slurm/cluster.sh up) installs packages and writes /etc/slurm: it needs root"


def cluster(command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CLUSTER), command], capture_output=True, text=True, timeout=1200)


def snakemake_on_slurm(workdir: Path, *args: str, check: bool = True, **popen) -> Run | subprocess.Popen:
    """Run the venv's Snakemake with the site profile + test overlay, under a hard time limit.

    `args` go first: `--configfile` takes several values and would swallow a target after it.
    """
    command = [
        "timeout",
        "-k",
        "30",
        str(RUN_LIMIT_S),
        str(Path(sys.executable).parent / "snakemake"),
        *args,
        "--profile",
        "profiles/slurm",
        "--profile",
        str(OVERLAY),
        "--configfile",
        "small.yaml",
    ]
    if popen:
        return subprocess.Popen(command, cwd=workdir, env=driver_env(), text=True, **popen)
    result = subprocess.run(command, cwd=workdir, env=driver_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-6000:]}")
    return finished(result.returncode, result.stdout)


def driver_env() -> dict[str, str]:
    """A driver's environment: none of the caller's site settings or allocation, and the job
    environment named (the profile's precommand activates it; a workflow copy has no .venv)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ARENA_SLURM_", "SLURM_"))}
    return {**env, "ARENA_JOB_ENV": sys.prefix}


def snakemake_in_allocation(workdir: Path, *args: str) -> tuple[int, str]:
    """The driver environment's Snakemake started inside an `sbatch` allocation, the way a
    multi-day run is hosted: its exit status (`sbatch --wait`) and its output (the
    allocation's log, which first names the allocation)."""
    driver = [
        str(DRIVER_ENV / "bin" / "snakemake"),
        *args,
        "--profile",
        "profiles/slurm",
        "--profile",
        str(OVERLAY),
        "--configfile",
        "small.yaml",
    ]
    log = workdir / "driver.out"
    command = [
        "timeout",
        "-k",
        "30",
        str(RUN_LIMIT_S),
        "sbatch",
        "--wait",
        "--job-name",
        "arena-driver",
        "--cpus-per-task",
        "1",
        "--mem",
        "1000",
        "--chdir",
        str(workdir),
        "--output",
        str(log),
        "--wrap",
        f'echo "driver allocation $SLURM_JOB_ID"; exec {shlex.join(driver)}',
    ]
    result = subprocess.run(command, env=driver_env(), capture_output=True, text=True)
    return result.returncode, (log.read_text() if log.exists() else "") + result.stdout + result.stderr


def finished(returncode: int, stdout: str) -> Run:
    match = re.search(r"SLURM run ID: (\S+)", stdout)
    assert match, stdout[-3000:]
    return Run(returncode, stdout, match.group(1))


@dataclass
class Requeued:
    """The one-fold rebuild: its run, the SLURM id of the teacher's job, and the checkpoint
    step written when the job was requeued."""

    run: Run
    slurm_id: str
    step: int


def rebuild_one_fold_with_a_requeue(workdir: Path) -> Requeued:
    """Force llama's fold-1 teacher (and its logits); once its job has written a checkpoint,
    `scontrol requeue` it, as a preemption would, and let the run finish."""
    state = workdir / "results/checkpoints/train_teacher/llama/fold1/latest/state.json"
    output = workdir / "rebuild.out"
    with output.open("w") as sink:
        job = snakemake_on_slurm(
            workdir, "results/teachers/llama/fold1/logits.parquet", "--forcerun", "train_teacher", stdout=sink, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 600
            while not state.exists() and job.poll() is None and time.monotonic() < deadline:
                time.sleep(0.5)
            assert state.exists(), "no checkpoint appeared"
            step = json.loads(state.read_text())["step"]
            slurm_id = running_job(REQUEUED_JOB)
            subprocess.run(["scontrol", "requeue", slurm_id], check=True)
            release_when_pending(slurm_id)
            job.wait(timeout=RUN_LIMIT_S + 60)
        finally:
            # A scenario that went wrong stops its Snakemake (`timeout` passes the signal on),
            # so the next one finds the working directory unlocked.
            if job.poll() is None:
                job.terminate()
                job.wait(timeout=60)
    return Requeued(finished(job.returncode, output.read_text()), slurm_id, step)


def running_job(comment: str) -> str:
    """The SLURM id of the running or pending job with this comment."""
    lines = subprocess.run(["squeue", "-h", "-o", "%i|%k"], capture_output=True, text=True, check=True).stdout
    ids = [line.split("|", 1)[0] for line in lines.splitlines() if line.split("|", 1)[1] == comment]
    assert len(ids) == 1, lines
    return ids[0]


def release_when_pending(slurm_id: str) -> None:
    """Slurm holds a requeued job back for two minutes (BeginTime); the test need not wait."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = subprocess.run(["squeue", "-h", "-j", slurm_id, "-o", "%T"], capture_output=True, text=True).stdout.strip()
        if state == "PENDING":
            subprocess.run(["scontrol", "update", f"JobId={slurm_id}", "StartTime=now"], check=True)
            return
        time.sleep(0.5)
    raise AssertionError(f"job {slurm_id} never went back to PENDING after the requeue")


@dataclass
class FailedFold:
    """The failed-fold scenario: the run that failed, which `SHARD_TARGETS` existed right
    after it, and the rerun."""

    failed: Run
    existed: list[bool]
    rerun: Run


def fail_one_fold_then_rerun(workdir: Path) -> FailedFold:
    """Break qwen's fold-0 adapter and rescore one shard of each fold (`--keep-going`); then
    put the adapter back, its time stamp too, and run the same targets again."""
    adapter = workdir / "results/teachers/qwen/fold0/adapter/adapter_model.safetensors"
    original, stat = adapter.read_bytes(), adapter.stat()
    adapter.write_bytes(b"this is not a safetensors file")
    failed = snakemake_on_slurm(workdir, *SHARD_TARGETS, "--forcerun", "teacher_logits", "--keep-going", check=False)
    existed = [(workdir / target).exists() for target in SHARD_TARGETS]
    adapter.write_bytes(original)
    os.utime(adapter, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return FailedFold(failed, existed, snakemake_on_slurm(workdir, *SHARD_TARGETS, check=False))


class TinyDagOnSlurm:
    """`cluster.sh up`, then in a thread: the tiny DAG through the unchanged site profile, the
    driver inside an allocation, and the scenarios on the finished run.

    Without the fresh-init students: more jobs of a rule the DAG runs anyway, which the local
    run covers; the submission is the same.
    """

    def __init__(self, dest: Path):
        self.workdir = tiny_workflow(dest / "tiny", compare_fresh_init=False)
        self.driver_workdir = tiny_workflow(dest / "driver", compare_fresh_init=False)
        self.up: subprocess.CompletedProcess | None = None
        self.run: Run | None = None
        self.driver: tuple[int, str] | None = None
        self.scenarios: dict[str, Any] = {}
        self.seconds: dict[str, float] = {}
        self.thread = threading.Thread(target=self._submit, daemon=True)
        self.thread.start()

    def _timed(self, name: str, action: Callable[[], Any]) -> Any:
        started = time.monotonic()
        try:
            return action()
        finally:
            self.seconds[name] = time.monotonic() - started

    def _submit(self) -> None:
        self.up = cluster("up")
        if self.up.returncode != 0:
            return
        self.run = self._timed("tiny DAG", lambda: snakemake_on_slurm(self.workdir, check=False))
        if (DRIVER_ENV / "bin" / "snakemake").exists():
            self.driver = self._timed("driver", lambda: snakemake_in_allocation(self.driver_workdir, DRIVER_TARGET))
        if self.run.returncode != 0:
            return
        for name, scenario in (("rebuild", rebuild_one_fold_with_a_requeue), ("failed fold", fail_one_fold_then_rerun)):
            try:
                self.scenarios[name] = self._timed(name, lambda: scenario(self.workdir))
            except Exception:  # the test that reads this scenario fails with it
                self.scenarios[name] = traceback.format_exc()

    def result(self) -> tuple[Path, Run]:
        """The finished run (waits for the thread); fails with the cluster's or Snakemake's output."""
        self.thread.join()
        assert self.up is not None and self.up.returncode == 0, (self.up.stdout + self.up.stderr)[-6000:] if self.up else "no cluster"
        assert self.run is not None and self.run.returncode == 0, self.run.stdout[-6000:] if self.run else "no run"
        print("through SLURM, beside the other tests: " + ", ".join(f"{name} {s:.0f} s" for name, s in self.seconds.items()))
        return self.workdir, self.run

    def driver_result(self) -> tuple[Path, Run]:
        """The driver-in-an-allocation run (waits for it); fails with its output."""
        self.thread.join()
        assert self.driver is not None, f"no driver run: {DRIVER_ENV} is missing (make driver)"
        returncode, output = self.driver
        assert returncode == 0 and "SLURM run ID" in output, output[-6000:]
        return self.driver_workdir, finished(returncode, output)

    def scenario(self, name: str) -> Any:
        """What a scenario left (waits for it); fails with its traceback if it raised."""
        self.result()
        outcome = self.scenarios.get(name)
        assert outcome is not None and not isinstance(outcome, str), outcome or f"scenario {name!r} did not run"
        return outcome
