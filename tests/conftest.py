"""Shared fixtures: the repository, the bundled sample, a tokenizer trained once per session."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from arena_distill.workflow.config import copy_workflow  # noqa: F401 - the tests' private workflow copies

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"


@pytest.fixture(scope="session")
def arena_train_csv(tmp_path_factory) -> Path:
    """The 100 real arena rows in Kaggle *train* schema (test file + its held-out labels)."""
    test = pd.read_csv(SAMPLE / "test.csv", dtype=str, keep_default_na=False)
    labels = pd.read_csv(SAMPLE / "test_labels.csv", dtype=str, keep_default_na=False)
    path = tmp_path_factory.mktemp("arena") / "train.csv"
    test.merge(labels, on="id").to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def tokenizer():
    from arena_distill.data.text import format_pair
    from arena_distill.modeling.tokenizer import train_bpe_tokenizer

    pairs = pd.read_parquet(SAMPLE / "train.parquet").sample(n=500, random_state=0)
    texts = [
        format_pair(json.loads(p), json.loads(a), json.loads(b))
        for p, a, b in zip(pairs["prompt"], pairs["response_a"], pairs["response_b"])
    ]
    return train_bpe_tokenizer(texts, vocab_size=2000)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The SLURM tests last: they read the tiny DAG that `tiny_dag_on_slurm` submitted when
    the session started, and it has had the whole session to finish."""
    items.sort(key=lambda item: item.get_closest_marker("slurm") is not None)


@pytest.fixture(scope="session", autouse=True)
def tiny_dag_on_slurm(request, tmp_path_factory):
    """When SLURM tests are collected (and may run: root), the loopback cluster comes up and
    the tiny DAG is submitted in the background at the session's start; `cluster.sh down`
    at its end. Keeping the cluster up all session also spares every other Snakemake start
    the ~9 s the SLURM plugin waits on `scontrol` when Slurm is installed but down."""
    from tests.slurm.loopback import TinyDagOnSlurm, cluster, missing_cluster_reason

    if missing_cluster_reason() or not any(item.get_closest_marker("slurm") for item in request.session.items):
        yield None
        return
    background = TinyDagOnSlurm(tmp_path_factory.mktemp("slurm"))
    yield background
    background.thread.join()
    down = cluster("down")
    assert down.returncode == 0, down.stdout + down.stderr


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the venv's snakemake in `workdir`; output (stdout + stderr) in `.stdout`."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "snakemake"), *args],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=1800,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-6000:]}")
    return result


def predict_cli(model, pairs, output, *extra: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """`arena-distill predict` (as `python -m arena_distill`) on `pairs` into `output`; text output captured."""
    command = [sys.executable, "-m", "arena_distill", "predict", "--model", str(model), "--input", str(pairs), "--output", str(output)]
    return subprocess.run([*command, *extra], cwd=cwd, check=check, capture_output=True, text=True)


def job_counts(output: str) -> dict[str, int]:
    """Per-rule job counts from the first 'Job stats' table of a Snakemake run."""
    counts: dict[str, int] = {}
    table = output.split("Job stats:", 1)[1]
    for line in table.splitlines()[3:]:
        match = re.fullmatch(r"\s*(\w+)\s+(\d+)\s*", line)
        if not match:
            break
        if match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts


@pytest.fixture(scope="session")
def tiny_local_run(tmp_path_factory) -> Path:
    """The tiny DAG run once with the local profile; shared by the end-to-end and SLURM tests."""
    from tests.tiny import tiny_workflow

    workdir = tiny_workflow(tmp_path_factory.mktemp("e2e"))
    result = snakemake(workdir, "--profile", "profiles/local", "--configfile", "small.yaml")
    assert "steps (100%) done" in result.stdout
    (workdir / "run.out").write_text(result.stdout)  # what the user's terminal showed
    return workdir


def copy_of_run(run: Path, dest: Path) -> Path:
    """A private copy of a finished run, timestamps and Snakemake's records kept, for a test
    that changes it: the shared run stays as its last job left it for every other test."""
    shutil.copytree(run, dest, symlinks=True)
    return dest
