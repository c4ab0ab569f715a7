"""The tiny workflow the end-to-end tests run: a few prompt groups of the bundled sample, small sizes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tests.conftest import copy_workflow

SMALL = """\
data:
  train: small/train.parquet
  extra: {alpaca_extra: small/extra.parquet}
  calibration: small/calibration.parquet
tokenizer: {vocab_size: 1000, max_texts: 300}
folds: {n: 2, seed: 2025, group_by: prompt}
text: {train_max_length: 128, test_max_length: 160, prompt_tokens: 48}
training: {eval_every: 20, batch_size: 32, micro_batch_size: 16}
post_pretrain: {data: small/post_pretrain.parquet, dev_rows: 20, compare_fresh_init: COMPARE}
teacher_logits: {n_shards: 2}
calibration: {enabled: true}
quantize: {n_calibration: 8}
"""
N_FOLDS, TEACHERS = 2, ("llama", "qwen")
# Students from the post-pretrained LoRA and, compared in the evaluation, from a fresh one; on the
# holdout, every student fold, the fresh-init fold average, the merged and the exported model.
STUDENT_SIDE = {"distill_student": 2 * N_FOLDS, "average_adapters": 1, "merge_student": 1, "quantize_student": 1,
                "calibrate_submission": 1, "predict": 1, "submission": 1, "score_holdout": 2 * N_FOLDS + 3, "evaluate": 1,
                "figures": 1}
TRAIN_PROMPTS, EXTRA_PROMPTS, POST_PRETRAIN_PROMPTS, CALIBRATION_ROWS = 48, 16, 8, 60


def write_small_sample(workdir: Path) -> dict[str, int]:
    """Whole prompt groups of the bundled sample, so folds stay grouped; returns row counts."""
    (workdir / "small").mkdir()
    counts = {}
    for name, prompts in (("train", TRAIN_PROMPTS), ("extra", EXTRA_PROMPTS), ("post_pretrain", POST_PRETRAIN_PROMPTS)):
        frame = pd.read_parquet(workdir / f"data/sample/{name}.parquet")
        keep = frame[frame["prompt"].isin(sorted(frame["prompt"].unique())[:prompts])]
        keep.to_parquet(workdir / f"small/{name}.parquet", index=False)
        counts[name] = len(keep)
    calibration = pd.read_parquet(workdir / "data/sample/arena_calibration.parquet").head(CALIBRATION_ROWS)
    calibration.to_parquet(workdir / "small/calibration.parquet", index=False)
    counts["calibration"] = len(calibration)
    return counts


def tiny_workflow(dest: Path, compare_fresh_init: bool = True) -> Path:
    """A private workflow copy with `small.yaml` and its data, ready for `--configfile small.yaml`;
    with `compare_fresh_init` it also distils the fresh-init students (more jobs of the same rule)."""
    workdir = copy_workflow(dest)
    (workdir / "small.yaml").write_text(SMALL.replace("COMPARE", str(compare_fresh_init).lower()))
    write_small_sample(workdir)
    return workdir
