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

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from arena_distill import LABELS
from arena_distill.io import read_json, read_parquet, read_table
from arena_distill.scoring.metrics import accuracy, labelled_rows, log_loss, prior_log_loss, validation_metrics
from arena_distill.scoring.postprocess import apply_shrink, fit_shrink_out_of_fold, no_ties

METRIC_COLUMNS = ["rows", "log_loss", "log_loss_tta", "accuracy", "accuracy_tta", "prior_log_loss"]
PROBS = ["p_a", "p_b", "p_tie"]
CALIBRATED = ["calibrated_a", "calibrated_b", "calibrated_tie"]
COMPARED = re.compile(r"compared_(\w+)_a")


def compared_columns(method: str) -> list[str]:
    """The per-row probability columns of a calibration the run fitted for comparison only."""
    return [f"compared_{method}_{label}" for label in ("a", "b", "tie")]


def compared_methods(columns: Iterable[str]) -> list[str]:
    """The compared calibrations a scored table holds (`compared_columns`)."""
    return [match.group(1) for match in map(COMPARED.fullmatch, columns) if match]


def oof_metrics(val_logits: Sequence[str | Path]) -> dict:
    """Per-fold and pooled metrics of a model's out-of-fold logits tables."""
    frames = [read_parquet(path) for path in val_logits]
    per_fold = [validation_metrics(frame) for frame in frames]
    pooled = validation_metrics(pd.concat(frames, ignore_index=True))
    return {"folds": [rename(m) for m in per_fold], "pooled": rename(pooled)}


def rename(metrics: Mapping[str, float]) -> dict:
    """`val_*` keys of validation_metrics → the report's column names."""
    names = {
        "val_rows": "rows",
        "val_log_loss": "log_loss",
        "val_log_loss_tta": "log_loss_tta",
        "val_accuracy": "accuracy",
        "val_accuracy_tta": "accuracy_tta",
        "val_prior_log_loss": "prior_log_loss",
    }
    return {names[k]: v for k, v in metrics.items() if k in names}


def probs_metrics(plain: np.ndarray, tta: np.ndarray | None, labels: np.ndarray) -> dict:
    metrics = {"rows": int(len(labels)), "log_loss": log_loss(plain, labels), "accuracy": accuracy(plain, labels)}
    if tta is not None:
        metrics.update(log_loss_tta=log_loss(tta, labels), accuracy_tta=accuracy(tta, labels))
    metrics["prior_log_loss"] = prior_log_loss(labels)
    return metrics


def summary_markdown(report: Mapping) -> str:
    """The report as readable tables: one line per model and row set."""
    lines = [
        "# Evaluation",
        "",
        "Log loss (lower is better) beside the class prior of the same rows; TTA averages each pair with its A/B mirror.",
        "",
        "| model | rows | log loss | log loss TTA | accuracy | accuracy TTA | prior log loss |",
        "|---|---|---|---|---|---|---|",
    ]

    def line(name: str, metrics: Mapping) -> str:
        cells = [f"{metrics[c]:.4f}" if isinstance(metrics.get(c), float) else str(metrics.get(c, "–")) for c in METRIC_COLUMNS]
        return f"| {name} | " + " | ".join(cells) + " |"

    for teacher, result in report.get("teachers", {}).items():
        for fold, metrics in enumerate(result["folds"]):
            lines.append(line(f"teacher {teacher} fold {fold} (OOF)", metrics))
        lines.append(line(f"teacher {teacher} pooled OOF", result["pooled"]))
    heuristic = report.get("heuristic")
    if heuristic:
        for fold, metrics in enumerate(heuristic["folds"]):
            lines.append(line(f"heuristic features model fold {fold} (OOF)", metrics))
        lines.append(line("heuristic features model pooled OOF", heuristic["pooled"]))
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
        lines += [
            "",
            f"Calibration ({fit['method']}), fitted on {fit['rows']} {fit['fitted_on']}: log loss "
            f"{fit['log_loss_before']:.4f} -> {fit['log_loss_after']:.4f} (prior {fit['prior_log_loss']:.4f}), predicted tie "
            f"share {fit['tie_share_before']:.1%} -> {fit['tie_share_after']:.1%} (true {fit['tie_share_true']:.1%}).",
        ]
    if "test" in report and "tie_share_true" in report["test"]:
        test = report["test"]
        lines += ["", f"Labelled test rows: predicted tie share {test['tie_share_predicted']:.1%}, true {test['tie_share_true']:.1%}."]
    if "options" in report:
        lines += options_markdown(report["options"])
    return "\n".join(lines) + "\n"


def labelled_test_rows(test_table: str | Path, test_labels: str | Path) -> pd.DataFrame:
    """The test rows whose labels are given, with their class in `label`."""
    labels = read_table(test_labels).astype({"id": np.int64, **dict.fromkeys(LABELS, np.int64)})
    rows = read_parquet(test_table).astype({"id": np.int64}).merge(labels, on="id")
    return rows.assign(label=rows[list(LABELS)].to_numpy().argmax(axis=1))


def labelled_test_metrics(submission: pd.DataFrame, labels: pd.DataFrame) -> dict:
    """The submission's probabilities (TTA as submitted) scored on the labelled test rows."""
    probs, truth = labelled_rows(submission, labels)
    return {
        "rows": int(len(truth)),
        "log_loss_tta": log_loss(probs, truth),
        "accuracy_tta": accuracy(probs, truth),
        "prior_log_loss": prior_log_loss(truth),
        "tie_share_predicted": float(probs[:, 2].mean()),
        "tie_share_true": float((truth == 2).mean()),
    }


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


def row_set_metrics(probs: np.ndarray, labels: np.ndarray) -> dict:
    """What an option does on one set of labelled rows: log loss, accuracy and the tie shares."""
    return {
        "rows": int(len(labels)),
        "log_loss": log_loss(probs, labels),
        "accuracy": accuracy(probs, labels),
        "prior_log_loss": prior_log_loss(labels),
        "tie_share_predicted": float(probs[:, 2].mean()),
        "tie_share_true": float((labels == 2).mean()),
    }


def option_scores(
    scored: Mapping[str, pd.DataFrame],
    student_val_logits: Sequence[str | Path],
    heuristic: Sequence[pd.DataFrame] = (),
    judge: pd.DataFrame | None = None,
) -> dict:
    """The source documents' options side by side on every labelled row set the scorings hold
    (holdout prompts, labelled test rows), each TTA as submitted, from the per-row
    probabilities of `score_holdout` (nothing is scored again):

    - the exported model, uncalibrated and, where the run calibrates, calibrated, and with each
      calibration fitted on the same rows for comparison (`calibrate_submission`'s `compared`);
    - the single best fold by out-of-fold log loss, and the fold ensemble (mean probabilities);
    - shrink (fitted on the pooled student out-of-fold predictions), the alternative to a calibration;
    - no ties, after the calibration;
    - the heuristic features model, its folds' mean probabilities (`heuristic`: their per-row tables);
    - the prompt judge (`judge`: its per-row table), when it ran.
    """
    folds = sorted((name for name in scored if name.startswith("student/fold")), key=lambda n: int(n.removeprefix("student/fold")))
    oof = [read_parquet(path) for path in student_val_logits]
    fold_losses = [validation_metrics(frame)["val_log_loss_tta"] for frame in oof]
    best = int(np.argmin(fold_losses))
    shrink = fit_shrink_out_of_fold(oof)
    submission = scored["submission"].set_index(["rows", "id"])
    submitted = CALIBRATED if CALIBRATED[0] in submission else PROBS
    aligned = {name: scored[name].set_index(["rows", "id"]).loc[submission.index] for name in folds}
    ensemble = sum(aligned[name][PROBS].to_numpy() for name in folds) / len(folds)
    exported = "exported model" + (", calibrated" if submitted == CALIBRATED else "")
    options = {
        "exported model, uncalibrated": submission[PROBS].to_numpy(),
        **({exported: submission[CALIBRATED].to_numpy()} if submitted == CALIBRATED else {}),
        **{
            f"exported model, calibrated ({method}, compared only)": submission[compared_columns(method)].to_numpy()
            for method in compared_methods(submission.columns)
        },
        f"best fold (fold {best}, OOF TTA {fold_losses[best]:.4f})": aligned[folds[best]][PROBS].to_numpy(),
        f"fold ensemble ({len(folds)} folds, mean probabilities)": ensemble,
        "exported model, shrink (instead of a calibration)": apply_shrink(submission[PROBS].to_numpy(), shrink),
        f"{exported}, no ties": no_ties(submission[submitted].to_numpy()),
    }
    if heuristic:
        tables = [table.set_index(["rows", "id"]).loc[submission.index] for table in heuristic]
        options[f"heuristic features model ({len(tables)} folds, mean probabilities)"] = sum(
            table[PROBS].to_numpy() for table in tables
        ) / len(tables)
    if judge is not None:
        options["prompt judge"] = judge.set_index(["rows", "id"]).loc[submission.index][PROBS].to_numpy()
    row_sets = submission.index.get_level_values("rows")
    labels = submission["label"].to_numpy()
    results = {
        option: {row_set: row_set_metrics(probs[row_sets == row_set], labels[row_sets == row_set]) for row_set in dict.fromkeys(row_sets)}
        for option, probs in options.items()
    }
    return {"best_fold": best, "fold_oof_log_loss_tta": fold_losses, "shrink": shrink.to_dict(), "options": results}


def options_markdown(report: Mapping) -> list[str]:
    """The options table: one line per option, log loss and predicted tie share per row set."""
    options = report["options"]
    row_sets = list(next(iter(options.values())))
    names = {"holdout": "holdout prompts", "test": "labelled test rows"}
    first = next(iter(options.values()))
    header = " | ".join(
        f"{names.get(r, r)} log loss (prior {first[r]['prior_log_loss']:.4f}) | tie share (true {first[r]['tie_share_true']:.1%})"
        for r in row_sets
    )
    lines = [
        "",
        "## Options",
        "",
        "Each TTA, from the per-row probabilities of the holdout scorings; shrink is fitted on "
        "the student folds' out-of-fold predictions, the best fold chosen by them.",
        "",
        f"| option | {header} |",
        "|---|" + "---|---|" * len(row_sets),
    ]
    for option, per_set in options.items():
        cells = " | ".join(f"{per_set[r]['log_loss']:.4f} | {per_set[r]['tie_share_predicted']:.1%}" for r in row_sets)
        lines.append(f"| {option} | {cells} |")
    factors = ", ".join(f"{f:.2f}" for f in report["shrink"]["factors"])
    lines += ["", f"Shrink factors per top-class confidence bin ({', '.join(f'{e:.2f}' for e in report['shrink']['edges'])}): {factors}."]
    return lines


def evaluate_run(
    *,
    teacher_val_logits: Mapping[str, Sequence[str]],
    student_val_logits: Sequence[str],
    fresh_init_val_logits: Sequence[str],
    holdout: Mapping[str, Mapping] | None,
    holdout_probs: Mapping[str, str] | None = None,
    heuristic_val_logits: Sequence[str] = (),
    heuristic_scored: Sequence[str] = (),
    heuristic_test_scored: Sequence[str] = (),
    judge_scored: str | None = None,
    submission: str,
    test_labels: str | None,
    calibration: Mapping | None = None,
) -> dict:
    """The whole report: OOF per teacher and student, the holdout scores (`holdout_scores`, one
    job per model), the submission on the labelled test rows when their labels are given, and
    the options table from the scorings' per-row probabilities (`holdout_probs`, by scoring).
    The heuristic model's per-row tables come per fold: its holdout rows (`heuristic_scored`)
    and, when the test rows are labelled, its test rows (`heuristic_test_scored`, same order)."""
    report: dict = {
        "teachers": {teacher: oof_metrics(paths) for teacher, paths in teacher_val_logits.items()},
        "student": oof_metrics(student_val_logits),
    }
    if fresh_init_val_logits:
        report["student_fresh_init"] = oof_metrics(fresh_init_val_logits)
    if holdout:
        report["holdout"] = dict(holdout)
    if heuristic_val_logits:
        report["heuristic"] = oof_metrics(heuristic_val_logits)
    if holdout_probs:
        scored = {name: read_parquet(path) for name, path in holdout_probs.items()}
        heuristic = [
            pd.concat([read_parquet(path) for path in paths], ignore_index=True)
            for paths in zip(heuristic_scored, *([heuristic_test_scored] if heuristic_test_scored else []))
        ]
        report["options"] = option_scores(scored, student_val_logits, heuristic, read_parquet(judge_scored) if judge_scored else None)
    if calibration:
        report["calibration"] = dict(calibration)
    if test_labels:
        report["test"] = labelled_test_metrics(pd.read_csv(submission), read_table(test_labels))
    return report
