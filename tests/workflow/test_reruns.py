"""What a change reruns: after the tiny run, each input file and each top-level config block
changed in turn, and the exact rules Snakemake then plans, against the table in
docs/reruns.md (the table is the expectation; nothing here derives it from the workflow)."""

from __future__ import annotations

import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO, copy_of_run, snakemake

TABLE = REPO / "docs" / "reruns.md"
FILES = {
    "data.train": "small/train.parquet",
    "data.extra.alpaca_extra": "small/extra.parquet",
    "data.test": "data/sample/test.csv",
    "data.test_labels": "data/sample/test_labels.csv",
    "data.calibration": "small/calibration.parquet",
    "post_pretrain.data": "small/post_pretrain.parquet",
}
"""Each input file of the tiny run by its config key: the change points the key at a copy of the
file with its last row dropped."""
BLOCKS = {
    "data": "data: {bad_json: error}",
    "folds": "folds: {seed: 7}",
    "clean": "clean: {rules: [empty]}",
    "text": "text: {prompt_words: 200}",
    "training": "training: {warmup_ratio: 0.1}",
    "post_pretrain": "post_pretrain: {learning_rate: 2.0e-3}",
    "teacher_logits": "teacher_logits: {max_tokens: 4096}",
    "calibration": "calibration: {enabled: false}",
    "tokenizer": "tokenizer: {vocab_size: 900}",
    "teachers": "teachers: {llama: {learning_rate: 2.0e-3}}",
    "student": "student: {learning_rate: 2.0e-3}",
    "distill": "distill: {temperature: 2.0}",
    "average": "average: {method: mean_delta}",
    "merge": "merge: {dtype: float32}",
    "quantize": "quantize: {n_calibration: 6}",
    "predict": "predict: {max_tokens: 4096}",
    "judge": "judge: {max_length: 200}",
    "kaggle": "kaggle: {wheels: []}",
    "models_lock": "models_lock: config/other.lock.json",
}
"""Each top-level config block by one of its keys, changed from the tiny run's value."""


def documented() -> dict[str, set[str]]:
    """The table of docs/reruns.md: change -> the rules it reruns."""
    rows = {}
    for line in TABLE.read_text().splitlines():
        match = re.fullmatch(r"\| `([\w.]+)` \| [^|]+ \| ([^|]*) \|", line.strip())
        if match:
            rows[match.group(1)] = {rule.strip(" `") for rule in match.group(2).split(",") if rule.strip(" `-")}
    return rows


def changed_copy(workdir: Path, path: str) -> str:
    """A copy of the input file `path` without its last row, beside the run."""
    source, target = workdir / path, workdir / "changed" / Path(path).name
    target.parent.mkdir(exist_ok=True)
    if source.suffix == ".csv":
        frame = pd.read_csv(source, dtype=str, keep_default_na=False)
        frame.iloc[:-1].to_csv(target, index=False)
    else:
        pd.read_parquet(source).iloc[:-1].to_parquet(target, index=False)
    return str(target.relative_to(workdir))


def overlay_for(workdir: Path, change: str) -> str:
    """The YAML that makes `change`."""
    if change in BLOCKS:
        return BLOCKS[change]
    keys = change.split(".")
    text = changed_copy(workdir, FILES[change])
    for key in reversed(keys):
        text = f"{{{key}: {text}}}"
    return text[1:-1]


def planned_rules(workdir: Path, overlay: str, name: str = "change") -> set[str]:
    """The rules a dry run of the tiny run's targets plans under `overlay` (written to `name`.yaml;
    dry runs take no lock, so several run side by side)."""
    (workdir / f"{name}.yaml").write_text(overlay + "\n")
    result = snakemake(workdir, "-n", "--nolock", "--profile", "profiles/local", "--configfile", "small.yaml", f"{name}.yaml")
    if "Nothing to be done" in result.stdout:
        return set()
    table = result.stdout.split("Job stats:", 1)[1]
    return {m.group(1) for m in re.finditer(r"^(\w+)\s+\d+\s*$", table, flags=re.M)} - {"total", "all"}


@pytest.fixture(scope="module")
def planned(tiny_local_run, tmp_path_factory) -> dict[str, set[str]]:
    """Every change's planned rules, on a private copy of the tiny run, three dry runs at a time."""
    workdir = copy_of_run(tiny_local_run, tmp_path_factory.mktemp("reruns") / "run")
    changes = [*FILES, *BLOCKS]
    overlays = {change: overlay_for(workdir, change) for change in changes}
    with ThreadPoolExecutor(max_workers=3) as pool:
        rules = pool.map(lambda change: planned_rules(workdir, overlays[change], change.replace(".", "-")), changes)
        result = dict(zip(changes, rules))
    shutil.rmtree(workdir, ignore_errors=True)
    return result


def test_the_table_names_every_input_file_and_config_block():
    assert set(documented()) == set(FILES) | set(BLOCKS)


@pytest.mark.parametrize("change", [*FILES, *BLOCKS])
def test_a_change_reruns_what_the_table_says(planned, change):
    assert planned[change] == documented()[change]


def test_a_new_test_file_trains_nothing():
    """The Kaggle case: the test set is what changes; no training, teacher table or export reruns."""
    training_side = {
        "init_model",
        "post_pretrain",
        "train_teacher",
        "teacher_logits",
        "gather_logits",
        "calibrate_teacher",
        "heuristic_model",
        "distill_student",
        "average_adapters",
        "merge_student",
        "quantize_student",
        "calibrate_submission",
        "package_model",
    }
    assert not documented()["data.test"] & training_side
    assert not documented()["data.test_labels"] & training_side
