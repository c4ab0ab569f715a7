"""The workflow as a user runs it: the time of `snakemake -n` for the preset, and the peak
RSS of a `python -m arena_distill predict` run.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

from arena_distill.bench.tiny_default import SAMPLE
from arena_distill.workflow.config import PRESET, copy_workflow, with_placeholder_data


def preset_dry_run_seconds(workdir: Path) -> float:
    """`snakemake -n` of the preset on a copy of the workflow with placeholder data files."""
    copy = copy_workflow(workdir / "workflow")
    with_placeholder_data(copy, [PRESET])
    snakemake = Path(sys.executable).parent / "snakemake"
    started = time.perf_counter()
    subprocess.run([str(snakemake), "-n", "--configfile", "config/presets/blackpearl.yaml"], cwd=copy, check=True, capture_output=True)
    return time.perf_counter() - started


def predict_peak_rss_mib(base: Path, workdir: Path) -> float:
    """Peak RSS of the command-line prediction of the 100 bundled test pairs (a child process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(
        [
            sys.executable,
            "-m",
            "arena_distill",
            "predict",
            "--model",
            str(base),
            "--input",
            str(SAMPLE / "test.csv"),
            "--output",
            str(workdir / "predictions.csv"),
            "--max-length",
            "256",
        ],
        check=True,
        capture_output=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(before, after) / 1024
