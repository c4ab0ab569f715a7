"""The Kaggle bundle of the tiny run: built by its rule, installed offline into a fresh
virtualenv, run with two CPU workers, equal to the workflow's submission; bad input fails as
the command line does; the model card's plain-transformers snippet gives the command's numbers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from packaging.specifiers import SpecifierSet

from arena_distill import LABELS
from tests.conftest import job_counts, predict_cli, snakemake

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def bundle(tiny_local_run) -> tuple[Path, str]:
    """results/kaggle of the tiny run, for an image that lacks no wheel (the stand-in image
    below is this project's venv)."""
    (tiny_local_run / "kaggle.yaml").write_text("kaggle: {wheels: []}\n")
    args = ("results/kaggle", "--profile", "profiles/local", "--configfile", "small.yaml", "kaggle.yaml")
    planned = snakemake(tiny_local_run, "-n", *args)
    assert job_counts(planned.stdout) == {"kaggle_bundle": 1}, "the bundle needs nothing but the finished run"
    result = snakemake(tiny_local_run, *args)
    return tiny_local_run / "results/kaggle", result.stdout


@pytest.fixture(scope="module")
def kaggle_python(bundle, tmp_path_factory) -> Path:
    """A fresh virtualenv standing in for the Kaggle image: this venv's packages (torch,
    transformers, GPTQModel) reachable through a .pth file, and the bundle's wheels installed
    offline on top, as the bundle's README tells a notebook to."""
    venv = tmp_path_factory.mktemp("kaggle") / "venv"
    subprocess.run([sys.base_prefix + "/bin/python3.11", "-m", "venv", str(venv)], check=True)
    site = next(venv.glob("lib/python3.*/site-packages"))
    (site / "kaggle_image.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheels = sorted(str(w) for w in (bundle[0] / "wheels").glob("*.whl"))
    subprocess.run([str(venv / "bin/pip"), "install", "--quiet", "--no-index", "--no-deps", *wheels], check=True)
    return venv / "bin/python"


def run_bundle(python: Path, bundle: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), str(bundle / "predict.py"), *args], capture_output=True, text=True, timeout=600)


def test_the_bundle_holds_the_model_its_wheel_and_prints_the_time_budget(bundle):
    path, stdout = bundle
    assert sorted(p.name for p in path.iterdir() if not p.name.startswith(".")) == [
        "README.md",
        "bundle.json",
        "model",
        "predict.py",
        "wheels",
    ]
    assert [w.name for w in (path / "wheels").iterdir()] == ["arena_distill-0.1.0-py3-none-any.whl"]
    with zipfile.ZipFile(path / "wheels/arena_distill-0.1.0-py3-none-any.whl") as wheel:
        metadata = wheel.read("arena_distill-0.1.0.dist-info/METADATA").decode()
    requires = SpecifierSet(re.search(r"^Requires-Python: (.+)$", metadata, re.M).group(1))
    assert "3.12.1" in requires, "Kaggle's image runs Python 3.12"
    for name in ("config.json", "inference.json", "pair_format.py", "tokenizer.json"):
        model_file, served = path / "model" / name, path.parent / "model" / name
        assert model_file.read_bytes() == served.read_bytes(), name
    manifest = json.loads((path / "bundle.json").read_text())
    assert manifest["time_budget"]["pairs"] == 25_000 and manifest["time_budget"]["views"] == 2
    assert re.search(r"kaggle_bundle: 25,000 pairs x 2 scorings x \d+ tokens on 2xT4: ~[\d.e-]+ s at", stdout), stdout[-3000:]
    assert "pip install --no-index --no-deps" in (path / "README.md").read_text()


def test_the_offline_install_with_two_workers_writes_the_workflows_submission(bundle, kaggle_python, tmp_path, tiny_local_run):
    probe = subprocess.run(
        [str(kaggle_python), "-c", "import arena_distill; print(arena_distill.__file__)"], capture_output=True, text=True, check=True
    )
    assert probe.stdout.startswith(str(kaggle_python.parents[1])), "arena_distill comes from the bundle's wheel"
    out = tmp_path / "submission.csv"
    result = run_bundle(
        kaggle_python,
        bundle[0],
        "--input",
        str(tiny_local_run / "data/sample/test.csv"),
        "--output",
        str(out),
        "--device",
        "cpu",
        "--workers",
        "2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "100 pairs over 2 workers (cpu, cpu)" in result.stderr
    ours, workflow = pd.read_csv(out), pd.read_csv(tiny_local_run / "results/submission.csv")
    test_ids = pd.read_csv(tiny_local_run / "data/sample/test.csv", usecols=["id"])["id"]
    # the competition's format: its ids in its order, three probability columns in [0, 1] summing to 1
    assert list(ours.columns) == ["id", *LABELS] and ours["id"].tolist() == test_ids.tolist()
    values = ours[list(LABELS)].to_numpy()
    assert ((values >= 0) & (values <= 1)).all() and np.allclose(values.sum(axis=1), 1, atol=1e-6)
    ours, workflow = ours.sort_values("id"), workflow.sort_values("id")
    assert np.abs(ours[list(LABELS)].to_numpy() - workflow[list(LABELS)].to_numpy()).max() < 1e-6


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing column", "MissingColumnError"),
        ("malformed", "DataError: not a CSV table"),
        ("no gpu", "DeviceError: no GPU is visible"),
    ],
)
def test_bad_input_to_the_bundle_fails_like_the_command_line_and_writes_nothing(
    bundle, kaggle_python, tmp_path, tiny_local_run, case, message
):
    test = pd.read_csv(tiny_local_run / "data/sample/test.csv", dtype=str, keep_default_na=False)
    source = tmp_path / "test.csv"
    if case == "missing column":
        test.drop(columns="response_b").to_csv(source, index=False)
    elif case == "malformed":
        source.write_text('id,prompt,response_a,response_b\n1,"[""a""]","[""b""]","[""c""]"\n2,x,y,z,extra,more\n')
    else:
        test.head(3).to_csv(source, index=False)
    out = tmp_path / "submission.csv"
    device = [] if case == "no gpu" else ["--device", "cpu"]
    result = run_bundle(kaggle_python, bundle[0], "--input", str(source), "--output", str(out), *device)
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not out.exists()
    if case != "no gpu":
        command = predict_cli(str(bundle[0] / "model"), str(source), str(out), check=False)
        assert command.returncode == 2
        assert command.stderr.splitlines()[-1] == result.stderr.splitlines()[-1], "the same named error as the command line"


def test_the_model_cards_transformers_snippet_gives_the_command_lines_probabilities(tiny_local_run, tmp_path):
    card = (tiny_local_run / "results/model/README.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    rows = pd.read_csv(tiny_local_run / "data/sample/test.csv").head(4)
    rows.to_csv(tmp_path / "pairs.csv", index=False)
    program = snippet + (
        "\nimport pandas as pd\n"
        f"rows = pd.read_csv({str(tmp_path / 'pairs.csv')!r})\n"
        "print(json.dumps([probabilities(json.loads(p), json.loads(a), json.loads(b))"
        " for p, a, b in zip(rows.prompt, rows.response_a, rows.response_b)]))\n"
    )
    result = subprocess.run([sys.executable, "-c", program], cwd=tiny_local_run, capture_output=True, text=True, check=True)
    plain = np.array(json.loads(result.stdout.splitlines()[-1]))
    out = tmp_path / "cli.csv"
    predict_cli("results/model", str(tmp_path / "pairs.csv"), str(out), cwd=tiny_local_run)
    command = pd.read_csv(out).set_index("id").loc[rows["id"], list(LABELS)].to_numpy()
    assert json.loads((tiny_local_run / "results/model/inference.json").read_text())["calibration"]["method"] == "features"
    assert np.abs(plain - command).max() < 1e-5
