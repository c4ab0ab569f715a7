"""The planned DAG as data: every job's rule, wildcards, inputs, outputs and log, from a dry run.

A refactor of the rules must not change what a run does. The committed snapshots in
`tests/workflow/dags/` hold the DAG of each configuration below; `test_dag_identity` plans them
again and compares job for job. After a change that is meant to alter the DAG, rewrite them and
review the diff:

    .venv/bin/python -m tests.workflow.dag_snapshot
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from arena_distill.workflow.config import WORKFLOW_DIR, copy_workflow, with_placeholder_data

SNAPSHOTS = Path(__file__).parent / "dags"
FIELDS = ("input", "output", "log", "wildcards")
# name -> snakemake arguments of the dry run; the preset's data are empty placeholders.
CONFIGURATIONS = {
    "default": ("--profile", "profiles/local"),
    "small": ("--directory", ".test", "--configfile", ".test/small.yaml", "--cores", "2"),
    "preset": ("--configfile", "config/presets/blackpearl.yaml", "--cores", "2"),
    "budget": ("--configfile", "config/presets/budget.yaml", "--cores", "2"),
}
JOB = re.compile(r"^(?:local)?rule (\w+):$")


def parse_dry_run(output: str) -> list[dict[str, object]]:
    """The jobs of a dry run's output, each a dict of FIELDS (lists sorted), sorted as a whole."""
    jobs: list[dict[str, object]] = []
    job: dict[str, object] | None = None
    for line in output.splitlines():
        match = JOB.match(line)
        if match:
            job = {"rule": match.group(1)}
            jobs.append(job)
            continue
        if not line.startswith("    "):
            job = None
        if job is None:
            continue
        key, _, value = line.strip().partition(": ")
        if key in FIELDS:
            job[key] = sorted(part.strip() for part in value.split(", ") if part.strip())
    return sorted(jobs, key=lambda job: json.dumps(job, sort_keys=True))


def planned_dag(name: str, workdir: Path) -> list[dict[str, object]]:
    """Plan configuration `name` in a workflow copy at `workdir` (from scratch: nothing built)."""
    if name == "small" and not (workdir / ".test").exists():
        shutil.copytree(WORKFLOW_DIR / ".test", workdir / ".test", symlinks=True)
    if name in ("preset", "budget"):
        with_placeholder_data(workdir, [WORKFLOW_DIR / CONFIGURATIONS[name][1]])  # the preset's data: empty placeholders
    snakemake = Path(sys.executable).parent / "snakemake"
    result = subprocess.run(
        [str(snakemake), "-n", "--forceall", *CONFIGURATIONS[name]],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"dry run of {name} failed:\n{result.stdout[-4000:]}")
    return parse_dry_run(result.stdout)


def snapshot_path(name: str) -> Path:
    return SNAPSHOTS / f"{name}.json"


def main() -> int:
    SNAPSHOTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = copy_workflow(Path(tmp) / "workflow")
        for name in CONFIGURATIONS:
            jobs = planned_dag(name, workdir)
            snapshot_path(name).write_text(json.dumps(jobs, indent=1) + "\n")
            print(f"dag_snapshot: {name}: {len(jobs)} jobs -> {snapshot_path(name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
