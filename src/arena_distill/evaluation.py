"""The evaluation report: every model of the run against the class prior of the same rows.

Out-of-fold numbers (each fold's model on its own validation rows) judge the teachers and
the student folds. The fold-averaged model has trained on every fold's rows, so its
out-of-fold numbers would be in-sample; it is measured on the holdout prompts that no fold
ever trained on, and on the labelled test rows when their labels are given.

On the holdout each student fold is also scored alone, beside the average, which shows
what averaging costs or gains; with `post_pretrain.compare_fresh_init` the same is shown
for students whose LoRA started fresh instead of from the post-pretrained adapter. Each of
these models is its own `score_holdout` job, so a fold is scored as soon as it is trained.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from arena_distill.adapters import average_adapters
from arena_distill.io import read_json, read_parquet, read_table
from arena_distill.metrics import accuracy, labelled_rows, log_loss, prior_log_loss
from arena_distill.models import load_adapter, load_model, load_tokenizer
from arena_distill.calibration import PairScaling, views_probs
from arena_distill.prediction import View, load_classifier, score_views
from arena_distill.text import TextConfig
from arena_distill.stages import validation_metrics

METRIC_COLUMNS = ["rows", "log_loss", "log_loss_tta", "accuracy", "accuracy_tta", "prior_log_loss"]


def oof_metrics(val_logits: Sequence[str | Path]) -> dict:
    """Per-fold and pooled metrics of a model's out-of-fold logits tables."""
    frames = [read_parquet(path) for path in val_logits]
    per_fold = [validation_metrics(frame) for frame in frames]
    pooled = validation_metrics(pd.concat(frames, ignore_index=True))
    return {"folds": [rename(m) for m in per_fold], "pooled": rename(pooled)}


def rename(metrics: Mapping[str, float]) -> dict:
    """`val_*` keys of validation_metrics → the report's column names."""
    names = {"val_rows": "rows", "val_log_loss": "log_loss", "val_log_loss_tta": "log_loss_tta", "val_accuracy": "accuracy",
             "val_accuracy_tta": "accuracy_tta", "val_prior_log_loss": "prior_log_loss"}
    return {names[k]: v for k, v in metrics.items() if k in names}


def probs_metrics(plain: np.ndarray, tta: np.ndarray | None, labels: np.ndarray) -> dict:
    metrics = {"rows": int(len(labels)), "log_loss": log_loss(plain, labels), "accuracy": accuracy(plain, labels)}
    if tta is not None:
        metrics.update(log_loss_tta=log_loss(tta, labels), accuracy_tta=accuracy(tta, labels))
    metrics["prior_log_loss"] = prior_log_loss(labels)
    return metrics


def summary_markdown(report: Mapping) -> str:
    """The report as readable tables: one line per model and row set."""
    lines = ["# Evaluation", "", "Log loss (lower is better) beside the class prior of the same rows; "
             "TTA averages each pair with its A/B mirror.", "",
             "| model | rows | log loss | log loss TTA | accuracy | accuracy TTA | prior log loss |",
             "|---|---|---|---|---|---|---|"]

    def line(name: str, metrics: Mapping) -> str:
        cells = [f"{metrics[c]:.4f}" if isinstance(metrics.get(c), float) else str(metrics.get(c, "–")) for c in METRIC_COLUMNS]
        return f"| {name} | " + " | ".join(cells) + " |"

    for teacher, result in report.get("teachers", {}).items():
        for fold, metrics in enumerate(result["folds"]):
            lines.append(line(f"teacher {teacher} fold {fold} (OOF)", metrics))
        lines.append(line(f"teacher {teacher} pooled OOF", result["pooled"]))
    student = report["student"]
    for fold, metrics in enumerate(student["folds"]):
        lines.append(line(f"student fold {fold} (OOF)", metrics))
    lines.append(line("student pooled OOF", student["pooled"]))
    fresh = report.get("student_fresh_init")
    if fresh:
        for fold, metrics in enumerate(fresh["folds"]):
            lines.append(line(f"student fresh-init fold {fold} (OOF)", metrics))
        lines.append(line("student fresh-init pooled OOF", fresh["pooled"]))
    for name, metrics in report.get("holdout", {}).items():
        lines.append(line(f"{name} on holdout prompts", metrics))
    if "test" in report:
        lines.append(line("submission on labelled test rows", report["test"]))
    if "calibration" in report:
        fit = report["calibration"]
        lines += ["", f"Calibration ({fit['method']}), fitted on {fit['rows']} {fit['fitted_on']}: log loss "
                  f"{fit['log_loss_before']:.4f} -> {fit['log_loss_after']:.4f} (prior {fit['prior_log_loss']:.4f}), predicted tie "
                  f"share {fit['tie_share_before']:.1%} -> {fit['tie_share_after']:.1%} (true {fit['tie_share_true']:.1%})."]
    if "test" in report and "tie_share_true" in report["test"]:
        test = report["test"]
        lines += ["", f"Labelled test rows: predicted tie share {test['tie_share_predicted']:.1%}, true {test['tie_share_true']:.1%}."]
    return "\n".join(lines) + "\n"


def holdout_views(model_dir: str | Path, rows: pd.DataFrame, text: Mapping, settings: Mapping) -> list[View]:
    """A saved model's raw logits on labelled rows at the test settings, as given and mirrored."""
    model, tokenizer = load_classifier(model_dir, settings.get("dtype", "auto"), settings.get("gptq_backend", "auto"))
    return model_views(model, tokenizer, rows, text, settings)


def adapter_views(base: str | Path, adapters: Sequence[str | Path], method: str, rows: pd.DataFrame, text: Mapping,
                  settings: Mapping) -> list[View]:
    """A fold adapter (or the `method` average of several) merged into its base in float32, scored
    as `holdout_views` scores a saved model."""
    tokenizer = load_tokenizer(base)
    model = load_model(base, pad_token_id=tokenizer.pad_token_id, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        adapter = Path(adapters[0])
        if len(adapters) > 1:
            adapter = Path(tmp) / "averaged"
            average_adapters(adapters, adapter, method)
        merged = load_adapter(model, adapter).merge_and_unload().eval()
    return model_views(merged, tokenizer, rows, text, settings)


def model_views(model, tokenizer, rows: pd.DataFrame, text: Mapping, settings: Mapping) -> list[View]:
    return score_views(model, tokenizer, rows, TextConfig.of(text, settings["max_lengths"][0]), max_lengths=settings["max_lengths"],
                       max_tokens=settings.get("max_tokens", 65536))


def views_metrics(views: Sequence[View], labels: np.ndarray, calibration: PairScaling | None = None) -> dict:
    """Plain (given order) and TTA metrics of a model's scorings, after `calibration`."""
    plain = views_probs([v for v in views if not v[1]], calibration)
    mirror = views_probs([v for v in views if v[1]], calibration)
    return probs_metrics(plain, (plain + mirror) / 2, labels)


def labelled_test_metrics(submission: pd.DataFrame, labels: pd.DataFrame) -> dict:
    """The submission's probabilities (TTA as submitted) scored on the labelled test rows."""
    probs, truth = labelled_rows(submission, labels)
    return {"rows": int(len(truth)), "log_loss_tta": log_loss(probs, truth), "accuracy_tta": accuracy(probs, truth),
            "prior_log_loss": prior_log_loss(truth), "tie_share_predicted": float(probs[:, 2].mean()),
            "tie_share_true": float((truth == 2).mean())}


def holdout_name(scored: str) -> str:
    """The report's name of a holdout scoring (`score_holdout`'s wildcard): `student/fold0` ->
    "student fold 0", `student_fresh_init/average` -> "student fresh-init fold average"."""
    if scored == "merged":
        return "merged model (fold average)"
    if scored == "submission":
        return "submission (quantized)"
    run, part = scored.split("/")
    run = run.replace("_fresh_init", " fresh-init")
    return f"{run} fold average" if part == "average" else f"{run} fold {int(part.removeprefix('fold'))}"


def holdout_rows(train_table: str | Path, folds: str | Path) -> pd.DataFrame:
    """The labelled rows of the holdout prompts (none without a holdout)."""
    holdout_ids = read_json(folds).get("holdout_ids", [])
    return read_parquet(train_table).set_index("id").loc[holdout_ids].reset_index()


def holdout_scores(name: str, views: Sequence[View], labels: np.ndarray, calibration: PairScaling | None = None) -> dict:
    """One model's holdout metrics under its report name and, given a calibration, also as submitted."""
    report = {name: views_metrics(views, labels)}
    if calibration is not None:
        report[f"{name}, calibrated ({calibration.method})"] = views_metrics(views, labels, calibration)
    return report


def evaluate_run(
    *,
    teacher_val_logits: Mapping[str, Sequence[str]],
    student_val_logits: Sequence[str],
    fresh_init_val_logits: Sequence[str],
    holdout: Mapping[str, Mapping] | None,
    submission: str,
    test_labels: str | None,
    calibration: Mapping | None = None,
) -> dict:
    """The whole report: OOF per teacher and student, the holdout scores (`holdout_scores`, one
    job per model), and the submission on the labelled test rows when their labels are given."""
    report: dict = {
        "teachers": {teacher: oof_metrics(paths) for teacher, paths in teacher_val_logits.items()},
        "student": oof_metrics(student_val_logits),
    }
    if fresh_init_val_logits:
        report["student_fresh_init"] = oof_metrics(fresh_init_val_logits)
    if holdout:
        report["holdout"] = dict(holdout)
    if calibration:
        report["calibration"] = dict(calibration)
    if test_labels:
        report["test"] = labelled_test_metrics(pd.read_csv(submission), read_table(test_labels))
    return report
