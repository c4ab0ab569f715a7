"""The student side: distillation per fold, then one merged model for inference."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from arena_distill.data.pairs import encode_rows, fold_ids
from arena_distill.data.text import PairEncoder, TextConfig
from arena_distill.errors import DataError
from arena_distill.io import read_json, read_parquet
from arena_distill.modeling.models import load_adapter, load_model, load_tokenizer, resolve_dtype, save_model
from arena_distill.scoring.calibration import VectorScaling
from arena_distill.scoring.logits import LOGIT_COLUMNS
from arena_distill.student.loss import DistillTask, DistillWeights
from arena_distill.training.stages import ClassifierOutputs, FoldJob, examples_digest, fingerprint, model_fingerprint
from arena_distill.training.tasks import Examples

log = logging.getLogger(__name__)


def covered_rows(rows: pd.DataFrame, tables: Mapping[str, Sequence[str]]) -> np.ndarray:
    """Which of `rows` (by id and order) every teacher's logits tables score: the rows a student
    can learn from when the teachers scored a subset (`teacher_logits.max_rows`)."""
    key = pd.MultiIndex.from_arrays([rows["id"].to_numpy(), rows["swapped"].to_numpy(dtype=bool)])
    mask = np.ones(len(rows), dtype=bool)
    for paths in tables.values():
        scored = pd.concat([read_parquet(p, columns=["id", "swapped"]) for p in paths], ignore_index=True)
        mask &= key.isin(pd.MultiIndex.from_frame(scored.astype({"swapped": bool})))
    return mask


def teacher_targets(rows: pd.DataFrame, tables: Mapping[str, Sequence[str]], calibrations: Mapping[str, str]) -> np.ndarray:
    """Each teacher's logits for every (id, swapped) of `rows`: rows × teachers × classes.

    `tables` maps a teacher to its logits files (one per fold, or one precomputed table);
    `calibrations` maps a teacher to its `calibration.json` when calibration is on. A row
    no table scores is an error naming the teacher's files and the row id.
    """
    key = pd.MultiIndex.from_arrays([rows["id"].to_numpy(), rows["swapped"].to_numpy(dtype=bool)])
    per_teacher = []
    for teacher, paths in tables.items():
        frame = pd.concat([read_parquet(p, columns=["id", "swapped", *LOGIT_COLUMNS]) for p in paths], ignore_index=True)
        frame = frame.drop_duplicates(["id", "swapped"], keep="first").set_index(["id", "swapped"])
        missing = ~key.isin(frame.index)
        if missing.any():
            first = key[np.flatnonzero(missing)[0]]
            raise DataError(
                f"teacher {teacher!r} has no logits for {int(missing.sum())} training rows (first: swapped={bool(first[1])})",
                file=", ".join(paths),
                row=int(first[0]),
                column="id",
            )
        logits = frame.loc[key, LOGIT_COLUMNS].to_numpy(dtype=np.float64)
        if teacher in calibrations:
            logits = VectorScaling(**{k: v for k, v in read_json(calibrations[teacher]).items() if k in ("scale", "bias")}).apply(logits)
        per_teacher.append(logits.astype(np.float32))
    return np.stack(per_teacher, axis=1)


def distill_student(
    *,
    base: Mapping[str, Any],
    train_table: str,
    folds: str,
    fold: int,
    teacher_logits: Mapping[str, Sequence[str]],
    calibrations: Mapping[str, str],
    spec: Mapping[str, Any],
    training: Mapping[str, Any],
    distill: Mapping[str, Any],
    text: Mapping[str, Any],
    outputs: Mapping[str, str],
) -> None:
    """The student's LoRA classifier on the fold's train rows, taught by labels and teachers.

    Outputs mirror a teacher's: the best-val adapter, `metrics.json` and the fold's
    out-of-fold logits in both orders. With `distill["teacher_rows"]` the teachers scored a
    subset of the rows, and the student trains on the rows every teacher scored.
    """
    job = FoldJob.for_fold(base, spec, training, text, train_table, folds, fold)
    train_rows, val_rows = job.train_rows, job.val_rows
    if distill.get("teacher_rows"):
        train_rows = train_rows[covered_rows(train_rows, teacher_logits)]
        log.info(
            "fold %d: the teachers scored %d of the fold's %d train rows: the student learns those",
            fold,
            len(train_rows),
            len(job.train_rows),
        )
    targets = teacher_targets(train_rows, teacher_logits, calibrations)
    train_set = Examples(
        encode_rows(job.encoder, train_rows), {"label": train_rows["label"].to_numpy(dtype=np.int64), "teacher_logits": targets}
    )
    val_set = Examples(encode_rows(job.encoder, val_rows), {"label": val_rows["label"].to_numpy(dtype=np.int64)})
    log.info("fold %d: %d train rows (with mirrors) taught by %s, %d val rows", fold, len(train_set), list(teacher_logits), len(val_set))
    weights = DistillWeights(**distill.get("weights", {}))
    outputs = ClassifierOutputs(**outputs)
    result = job.train(
        DistillTask(distill["temperature"], weights, job.training.get("label_smoothing", 0.0)),
        train_set,
        val_set,
        outputs,
        fingerprint("distill_student", fold, spec, training, distill, text, model_fingerprint(base), examples_digest(train_set)),
    )
    metrics = {"train_rows": len(train_set), "teachers": list(teacher_logits), "init_adapter": base.get("init_adapter")}
    job.finish(result, metrics, outputs, columns={"fold": fold})


def merge_student(*, base: Mapping[str, Any], adapter: str, spec: Mapping[str, Any], dtype: str, out_model: str) -> None:
    """The averaged adapter merged into the student's base (never k-bit): a plain HF
    classifier directory. The post-pretrained LoRA needs no merge of its own: every fold
    adapter started from it, so the average carries it. The merge runs and saves in
    `dtype`; the original merged in fp16, which keeps small updates that bf16's 8-bit
    mantissa rounds away (an update of relative size 1e-3 keeps about half)."""
    tokenizer = load_tokenizer(base["path"])
    model = load_model(base["path"], pad_token_id=tokenizer.pad_token_id, seed=spec.get("seed", 0), dtype=resolve_dtype(dtype))
    merged = load_adapter(model, adapter).merge_and_unload()
    save_model(merged, tokenizer, out_model)


def calibration_texts(
    table: pd.DataFrame, folds: Mapping[str, Any], model_dir: str, text: Mapping[str, Any], *, n: int, seed: int, fold: int | None = None
) -> list[str]:
    """`n` random training pairs in the model's input format, as GPTQ calibration texts.

    Drawn from the train rows of `fold` (the original: fold 1, seed 2023) or of any fold
    (never the holdout), formatted and truncated exactly as in training, then decoded:
    GPTQ re-tokenizes them itself.
    """
    chosen = [split["fold"] for split in folds["folds"]] if fold is None else [fold]
    trained = sorted({row_id for index in chosen for row_id in fold_ids(folds, index, "train")})
    chosen = np.random.default_rng(seed).choice(trained, size=min(n, len(trained)), replace=False)
    rows = table.set_index("id").loc[chosen].reset_index()
    tokenizer = load_tokenizer(model_dir)
    encoder = PairEncoder(tokenizer, TextConfig.of(text, text["train_max_length"]))
    return tokenizer.batch_decode(encode_rows(encoder, rows))
