"""Every command in the bash blocks of the README and the docs pages, run in a fresh workflow copy.

Commands that need neither a GPU nor the competition data run as written (the scoring CLI
on the tests' tiny run, the capacity plan, DAG inspection); the long ones run as far as a
reader can check them without hours of compute: `make` targets with `make -n` (the target
exists and its recipe expands), Snakemake runs as dry runs of the same arguments, with
placeholder files where the preset names competition data. GPU commands are only named.
An `sbatch` that hosts Snakemake plans its wrapped command with the driver environment
(`make driver`). A command the pages gain that none of these rules covers fails the test.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from arena_distill.workflow.config import PRESET, with_placeholder_data
from tests.conftest import REPO, copy_workflow

BIN = Path(sys.executable).parent
GPU_ONLY = ("make gpu-check", "make gpu-check-bundle", "PYTHONPATH=src:.gpu-bundle python3 -m arena_distill.gpu.check")
"""Commands for a GPU node (README: GPU check): not run here."""


PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def readme_commands() -> list[str]:
    """Each distinct command line of the pages' bash blocks: comments, `export` lines and the
    optional-argument brackets of a usage line dropped, a pipe's first command kept."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", "".join(page.read_text() for page in PAGES), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if not line or line.startswith(("#", "export ")):
                continue
            line = re.sub(r"\s*\[[^\]]*\]", "", line).split(" | ")[0].split(" > ")[0].strip()
            commands.append(line)
    return list(dict.fromkeys(commands))


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **(env or {})},
    )
    assert result.returncode == 0, f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def workflow_copy(tmp_path_factory) -> Path:
    """A fresh workflow copy with `.test/` and the preset's data files as placeholders."""
    workdir = copy_workflow(tmp_path_factory.mktemp("readme"))
    shutil.copytree(REPO / ".test", workdir / ".test", symlinks=True)
    with_placeholder_data(workdir, [PRESET])
    return workdir


def test_the_readme_has_the_commands_this_test_knows():
    commands = readme_commands()
    assert "make demo" in commands and "make test" in commands and len(commands) > 15
    assert all(
        command.split()[0] in ("make", ".venv/bin/snakemake", "snakemake", ".venv/bin/arena-distill", "sbatch", ".venv/bin/tensorboard")
        or command in GPU_ONLY
        for command in commands
    ), commands


@pytest.mark.parametrize("command", [c for c in readme_commands() if c.startswith("make ") and c not in GPU_ONLY])
def test_make_targets_expand(command):
    run(["make", "-n", *shlex.split(command)[1:]], REPO)


@pytest.mark.parametrize("command", [c for c in readme_commands() if "snakemake" in c.split()[0]])
def test_snakemake_commands_plan(command, workflow_copy):
    args = shlex.split(command)[1:]
    if "--rulegraph" not in args:
        args.append("-n")
    result = run([str(BIN / "snakemake"), *args], workflow_copy)
    assert "Building DAG of jobs" in result.stdout + result.stderr


@pytest.mark.parametrize("command", [c for c in readme_commands() if c.startswith("sbatch ")])
def test_a_driver_submitted_with_sbatch_plans(command, workflow_copy):
    """The wrapped driver is `.venv-driver`'s Snakemake (the SLURM test runs one in an
    allocation); here it plans the same arguments."""
    args = shlex.split(command)
    driver, *snakemake_args = shlex.split(args[args.index("--wrap") + 1])
    assert driver == ".venv-driver/bin/snakemake"
    result = run([str(REPO / driver), *snakemake_args, "-n"], workflow_copy)
    assert "Building DAG of jobs" in result.stdout + result.stderr


@pytest.mark.parametrize("command", [c for c in readme_commands() if c.startswith(".venv/bin/arena-distill predict")])
def test_the_scoring_command_runs_on_a_finished_run(tiny_local_run, tmp_path, command):
    args = shlex.split(command)[1:]
    args[args.index("--output") + 1] = str(tmp_path / "preds.csv")
    run([str(BIN / "arena-distill"), *args], tiny_local_run)
    assert (tmp_path / "preds.csv").read_text().startswith("id,winner_model_a,winner_model_b,winner_tie\n")


@pytest.mark.parametrize("command", [c for c in readme_commands() if c.startswith(".venv/bin/arena-distill download")])
def test_the_download_command_lists_the_preset_models(workflow_copy, command):
    """Run with --dry-run: fetching 300 GB needs the network and a token."""
    result = run([str(BIN / "arena-distill"), *shlex.split(command)[1:], "--dry-run"], workflow_copy)
    assert "student.model: google/gemma-2-9b-it" in result.stdout


@pytest.mark.parametrize("command", [c for c in readme_commands() if c.startswith(".venv/bin/arena-distill plan")])
def test_the_capacity_plan_runs(workflow_copy, command):
    result = run([str(BIN / "arena-distill"), *shlex.split(command)[1:]], workflow_copy)
    assert "train_teacher" in result.stdout


@pytest.mark.parametrize("command", [c for c in readme_commands() if c.startswith(".venv/bin/tensorboard")])
def test_tensorboard_reads_the_curves_of_a_finished_run(tiny_local_run, command):
    """The serving command inspected instead of served (`--inspect` reads every event file and exits)."""
    args = [arg for arg in shlex.split(command)[1:] if arg not in ("--port", "6006")]
    result = run([str(BIN / "tensorboard"), *args, "--inspect"], tiny_local_run)
    assert "scalars" in result.stdout and "num_steps" in result.stdout and "train_teacher" in result.stdout


def test_every_command_kind_appears_in_the_pages():
    commands = readme_commands()
    for start in (
        ".venv/bin/arena-distill predict",
        ".venv/bin/arena-distill download",
        ".venv/bin/arena-distill plan",
        "sbatch ",
        ".venv/bin/tensorboard",
    ):
        assert any(c.startswith(start) for c in commands), start


def test_the_readmes_links_reach_files_and_headings():
    """The docs pages are checked by `mkdocs build --strict` (make lint); the README, outside
    them, here: each relative link names a file that exists, and its anchor a heading there."""
    links = re.findall(r"\]\(([^)#\s]+)(?:#([^)\s]+))?\)", (REPO / "README.md").read_text())
    assert len(links) > 10
    for path, anchor in links:
        target = REPO / path
        assert target.is_file(), path
        if anchor:
            headings = re.findall(r"^#+ (.+)$", target.read_text(), re.M)
            slugs = {re.sub(r"\s+", "-", re.sub(r"[^\w\s-]", "", h.lower()).strip()) for h in headings}
            assert anchor in slugs, f"{path}#{anchor}"
