"""The library's layout: packages by stage, layered (`[tool.importlinter]` in pyproject.toml,
checked by `make lint`), and modules small enough to hold one job."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "src" / "arena_distill"
MAX_MODULE_LINES = 400
TOP_LEVEL = {"__init__", "__main__", "cli", "launch", "errors", "io", "logs", "wheels"}
"""The modules outside a stage's package: the entry points and the shared kernel."""


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter's contracts of `root/pyproject.toml` over the package under `root/src`."""
    command = [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"]
    return subprocess.run(command, cwd=root, env={"PYTHONPATH": str(root / "src"), "PATH": ""}, capture_output=True, text=True)


@pytest.fixture
def package_copy(tmp_path) -> Path:
    shutil.copytree(PACKAGE, tmp_path / "src" / "arena_distill", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_layers_hold(package_copy):
    result = lint_imports(package_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "imported", "message"),
    [
        ("data/tables.py", "arena_distill.serving.prediction", "arena_distill.data is not allowed to import arena_distill.serving"),
        ("student/loss.py", "arena_distill.export.quantize", "arena_distill.student is not allowed to import arena_distill.export"),
        ("errors.py", "arena_distill.io", "arena_distill.errors is not allowed to import arena_distill.io"),
    ],
)
def test_an_upward_or_sideways_import_breaks_the_contract(package_copy, module, imported, message):
    path = package_copy / "src" / "arena_distill" / module
    path.write_text(path.read_text() + f"\nimport {imported}  # noqa: E402\n")
    result = lint_imports(package_copy)
    assert result.returncode != 0 and message in result.stdout, result.stdout + result.stderr


def test_every_module_is_small_and_in_its_place():
    modules = sorted(PACKAGE.rglob("*.py"))
    long = {str(path.relative_to(PACKAGE)): n for path in modules if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"
    loose = {path.stem for path in PACKAGE.glob("*.py")} - TOP_LEVEL
    assert not loose, f"modules outside a stage's package: {sorted(loose)}"


def test_what_the_workflow_imports_at_start_needs_no_model_library():
    """The SLURM driver's environment has Snakemake and nothing of the model stack."""
    probe = """
import importlib.abc, sys
class Forbid(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "transformers", "peft", "pandas", "numpy", "pyarrow", "sklearn", "scipy"}:
            raise ImportError(f"the driver has no {name}")
sys.meta_path.insert(0, Forbid())
import arena_distill.workflow.config, arena_distill.workflow.inputs, arena_distill.export.kaggle_wheels
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "ok", result.stderr
