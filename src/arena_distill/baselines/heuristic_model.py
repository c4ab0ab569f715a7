"""A small model over the answers' heuristic text features (`answer_features`: the source
documents' "analytical proxies for human-likeness"), as a baseline, an evaluation row and
optionally one more teacher for the student.

A pair's features are the A - B differences (which flip sign with the order) and their
absolute values (which do not: the tie signal), beside the prompt's length. A multinomial
logistic regression per fold learns from the fold's training rows; its fitted numbers are
saved as JSON, so the test rows are scored by a job of their own and a new test file never
refits it (nor, through its teacher logits, retrains a student).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from arena_distill.data.answer_features import FEATURES, combine, response_features
from arena_distill.data.pairs import SWAPPED_LABEL, fold_rows
from arena_distill.data.text import join_turns
from arena_distill.io import atomic_path, read_json, read_parquet, write_json
from arena_distill.scoring.logits import logits_frame
from arena_distill.scoring.metrics import validation_metrics


def joined(cell) -> str:
    """A table cell as one text: the prepared tables hold each side as an array of turns, the
    Kaggle files as a JSON list of them."""
    if isinstance(cell, str):
        try:
            cell = json.loads(cell)
        except ValueError:
            return cell
        if not isinstance(cell, list):
            return str(cell)
    return join_turns([str(turn) for turn in cell if turn is not None])


def pair_features(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per pair, as given and mirrored (B as A), `answer_features.combine`: A - B of every
    feature, |A - B|, and the prompt's log length. Each distinct response to a prompt is
    measured once, for both orders and every pair it is in (an answer meets several rivals:
    the sample's 10k pairs hold ~3.4k answers)."""
    prompts = rows["prompt"].map(joined).tolist()
    measured: dict[tuple[str, str], list[float]] = {}

    def features(prompt: str, cell) -> list[float]:
        key = (prompt, joined(cell))
        if key not in measured:
            measured[key] = list(response_features(*key).values())
        return measured[key]

    answers = [(p, features(p, a), features(p, b)) for p, a, b in zip(prompts, rows["response_a"], rows["response_b"])]
    width = 2 * len(FEATURES) + 1
    given = np.array([combine(p, a, b) for p, a, b in answers], dtype=np.float64).reshape(len(rows), width)
    mirrored = np.array([combine(p, b, a) for p, a, b in answers], dtype=np.float64).reshape(len(rows), width)
    return given, mirrored


def both_orders(rows: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """`rows` (with `id`) as given and mirrored, in the teachers' layout (`id`, `swapped`), and
    their features in that order."""
    index = pd.DataFrame({"id": np.concatenate([rows["id"].to_numpy()] * 2), "swapped": [False] * len(rows) + [True] * len(rows)})
    return index, np.vstack(pair_features(rows))


def mirrored_labels(labels: np.ndarray) -> np.ndarray:
    """Labels in `both_orders`' order: as given, then each mirror's (the swapped label)."""
    return np.concatenate([labels, SWAPPED_LABEL[labels]])


def fit_heuristic_model(features: np.ndarray, labels: np.ndarray, seed: int = 0) -> Pipeline:
    """Standardized features into a multinomial logistic regression (L2, C = 1), fitted on
    rows in both orders (`both_orders`' features, `mirrored_labels`), so it is order-symmetric."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=seed)).fit(features, labels)


def heuristic_logits(model: Pipeline, features: np.ndarray) -> np.ndarray:
    """Log-probabilities for (A, B, tie), the logits a student can learn from. A class the
    fold's rows never showed (AlpacaEval has few ties) gets 1e-6 before normalizing."""
    probs = np.full((len(features), 3), 1e-6)
    if len(features):  # a run without a holdout scores no row (sklearn refuses an empty array)
        probs[:, model.classes_] = model.predict_proba(features)
    return np.log(probs / probs.sum(axis=1, keepdims=True))


def heuristic_table(model: Pipeline, rows: pd.DataFrame, extra: dict | None = None) -> pd.DataFrame:
    """The model's logits on `rows` in both orders, as a teacher's logits table."""
    index, features = both_orders(rows)
    return logits_frame(index, heuristic_logits(model, features), extra)


def scored_table(model: Pipeline, row_set: str, rows: pd.DataFrame) -> pd.DataFrame:
    """TTA probabilities per labelled row, in `score_holdout`'s per-row layout."""
    given, mirrored = (np.exp(heuristic_logits(model, f)) for f in pair_features(rows))
    table = pd.DataFrame({"rows": row_set, "id": rows["id"].to_numpy(), "label": rows["label"].to_numpy()})
    table[["p_a", "p_b", "p_tie"]] = (given + mirrored[:, SWAPPED_LABEL]) / 2
    return table


def model_record(model: Pipeline) -> dict:
    """The fitted numbers of `fit_heuristic_model`'s pipeline, JSON-able (no pickle: a file
    that is loaded must not be able to run code)."""
    scaler, regression = model.named_steps["standardscaler"], model.named_steps["logisticregression"]
    return {
        "mean": scaler.mean_.tolist(),
        "scale": scaler.scale_.tolist(),
        "classes": regression.classes_.tolist(),
        "coef": regression.coef_.tolist(),
        "intercept": regression.intercept_.tolist(),
    }


def model_from_record(record: Mapping) -> Pipeline:
    """The pipeline `model_record` saved, ready to predict (the same probabilities)."""
    scaler, regression = StandardScaler(), LogisticRegression()
    scaler.mean_, scaler.scale_ = np.asarray(record["mean"]), np.asarray(record["scale"])
    scaler.var_, scaler.n_features_in_ = scaler.scale_**2, len(record["mean"])
    regression.classes_, regression.coef_ = np.asarray(record["classes"]), np.asarray(record["coef"])
    regression.intercept_, regression.n_features_in_ = np.asarray(record["intercept"]), len(record["mean"])
    return make_pipeline(scaler, regression)


def score_test(model: str, test_rows: pd.DataFrame, out: str) -> None:
    """A fold's saved model (`model_record`) on the labelled test rows: their TTA probabilities
    in `scored_table`'s layout."""
    with atomic_path(out) as tmp:
        scored_table(model_from_record(read_json(model)), "test", test_rows).to_parquet(tmp, index=False)


def heuristic_model(
    *,
    train_table: str,
    folds: str,
    fold: int,
    teacher_rows: str,
    outputs: Mapping[str, str],
) -> dict:
    """One fold: fit on the fold's training rows, then write its logits as a teacher's
    (`outputs["logits"]`: the training rows, or the validation rows with `teacher_rows: oof`),
    its out-of-fold logits with labels (`val_logits`), its TTA probabilities on the holdout
    rows (`scored`) and the fitted model (`model`). Returns the out-of-fold metrics."""
    table, split = read_parquet(train_table), read_json(folds)
    train_rows, val_rows = fold_rows(table, split, fold, "train"), fold_rows(table, split, fold, "val")
    # The training rows' features serve the fit and their teacher logits: computed once.
    train_index, train_features = both_orders(train_rows)
    model = fit_heuristic_model(train_features, mirrored_labels(train_rows["label"].to_numpy()))
    val_table = heuristic_table(model, val_rows, {"label": mirrored_labels(val_rows["label"].to_numpy())})
    if teacher_rows == "train":
        teacher_table = logits_frame(train_index, heuristic_logits(model, train_features))
    else:
        teacher_table = val_table.drop(columns="label")
    holdout = table.set_index("id").loc[split.get("holdout_ids", [])].reset_index()
    for name, frame in (("logits", teacher_table), ("val_logits", val_table), ("scored", scored_table(model, "holdout", holdout))):
        with atomic_path(outputs[name]) as tmp:
            frame.to_parquet(tmp, index=False)
    write_json(model_record(model), outputs["model"])
    return validation_metrics(val_table)
