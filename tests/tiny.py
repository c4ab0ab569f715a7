"""The tiny workflow the end-to-end tests run: a few prompt groups of the bundled sample, small sizes."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from tests.conftest import REPO, copy_workflow

N_FOLDS, TEACHERS = 2, ("llama", "qwen")
# Students from the post-pretrained LoRA and, compared in the evaluation, from a fresh one; on the
# holdout, every student fold, the fresh-init fold average, the merged and the exported model.
STUDENT_SIDE = {
    "distill_student": 2 * N_FOLDS,
    "average_adapters": 1,
    "merge_student": 1,
    "quantize_student": 1,
    "package_model": 1,
    "calibrate_submission": 1,
    "predict": 1,
    "submission": 1,
    "score_holdout": 2 * N_FOLDS + 3,
    "evaluate": 1,
    "figures": 1,
}
SCAFFOLD = REPO / ".test"
"""The committed small DAG (`.test/small.yaml` and `.test/small/`), also run by hand."""
CALIBRATION_ROWS = 60


def tiny_workflow(dest: Path, compare_fresh_init: bool = True) -> Path:
    """A private workflow copy with `small.yaml` and its data, ready for `--configfile small.yaml`;
    with `compare_fresh_init` it also distils the fresh-init students (more jobs of the same rule)."""
    workdir = copy_workflow(dest)
    overlay = yaml.safe_load((SCAFFOLD / "small.yaml").read_text())
    overlay["post_pretrain"]["compare_fresh_init"] = compare_fresh_init
    (workdir / "small.yaml").write_text(yaml.safe_dump(overlay))
    shutil.copytree(SCAFFOLD / "small", workdir / "small")
    return workdir
