"""The loopback cluster and the tiny DAG on it, shared by the SLURM tests and the session.

The tiny DAG through SLURM mostly waits: the executor plugin sleeps 5 s before every `sbatch`
and polls ever more slowly while no job ends. `TinyDagOnSlurm` brings the cluster up and
submits the DAG in a background thread when the session starts, so those waits overlap the
other tests; the SLURM tests, which run last, then read its finished result. After it, the
same thread starts the driver environment's Snakemake (`make driver`) inside an `sbatch`
allocation and has it build the folds of a second copy.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO
from tests.tiny import tiny_workflow

CLUSTER = Path(__file__).with_name("cluster.sh")
OVERLAY = Path(__file__).with_name("profile")
RUN_LIMIT_S = 1500
DRIVER_ENV = REPO / ".venv-driver"
"""`make driver`'s environment: Snakemake and plugin 2.7.1, no model libraries."""
DRIVER_TARGET = "results/folds/folds_clean.json"
"""What the driver inside an allocation builds: the data and fold rules, local rules included."""


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
        "timeout", "-k", "30", str(RUN_LIMIT_S), str(Path(sys.executable).parent / "snakemake"),
        *args, "--profile", "profiles/slurm", "--profile", str(OVERLAY), "--configfile", "small.yaml",
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
    driver = [str(DRIVER_ENV / "bin" / "snakemake"), *args, "--profile", "profiles/slurm", "--profile", str(OVERLAY),
              "--configfile", "small.yaml"]
    log = workdir / "driver.out"
    command = ["timeout", "-k", "30", str(RUN_LIMIT_S), "sbatch", "--wait", "--job-name", "arena-driver", "--cpus-per-task", "1",
               "--mem", "1000", "--chdir", str(workdir), "--output", str(log),
               "--wrap", f'echo "driver allocation $SLURM_JOB_ID"; exec {shlex.join(driver)}']
    result = subprocess.run(command, env=driver_env(), capture_output=True, text=True)
    return result.returncode, (log.read_text() if log.exists() else "") + result.stdout + result.stderr


def finished(returncode: int, stdout: str) -> Run:
    match = re.search(r"SLURM run ID: (\S+)", stdout)
    assert match, stdout[-3000:]
    return Run(returncode, stdout, match.group(1))


class TinyDagOnSlurm:
    """`cluster.sh up`, then the tiny DAG through the unchanged site profile, in a thread.

    Without the fresh-init students: more jobs of a rule the DAG runs anyway, which the local
    run covers; the submission is the same.
    """

    def __init__(self, dest: Path):
        self.workdir = tiny_workflow(dest / "tiny", compare_fresh_init=False)
        self.driver_workdir = tiny_workflow(dest / "driver", compare_fresh_init=False)
        self.up: subprocess.CompletedProcess | None = None
        self.run: Run | None = None
        self.driver: tuple[int, str] | None = None
        self.seconds = 0.0
        self.thread = threading.Thread(target=self._submit, daemon=True)
        self.thread.start()

    def _submit(self) -> None:
        self.up = cluster("up")
        if self.up.returncode == 0:
            started = time.monotonic()
            self.run = snakemake_on_slurm(self.workdir, check=False)
            self.seconds = time.monotonic() - started
            if (DRIVER_ENV / "bin" / "snakemake").exists():
                self.driver = snakemake_in_allocation(self.driver_workdir, DRIVER_TARGET)

    def result(self) -> tuple[Path, Run]:
        """The finished run (waits for it); fails with the cluster's or Snakemake's output."""
        self.thread.join()
        assert self.up is not None and self.up.returncode == 0, (self.up.stdout + self.up.stderr)[-6000:] if self.up else "no cluster"
        assert self.run is not None and self.run.returncode == 0, self.run.stdout[-6000:] if self.run else "no run"
        print(f"tiny DAG through SLURM: {self.seconds:.0f} s (beside the other tests)")
        return self.workdir, self.run

    def driver_result(self) -> tuple[Path, Run]:
        """The driver-in-an-allocation run (waits for it); fails with its output."""
        self.thread.join()
        assert self.driver is not None, f"no driver run: {DRIVER_ENV} is missing (make driver)"
        returncode, output = self.driver
        assert returncode == 0 and "SLURM run ID" in output, output[-6000:]
        return self.driver_workdir, finished(returncode, output)
