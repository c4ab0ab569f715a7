"""Scoring one model on the holdout prompts and the labelled test rows (the `score_holdout`
rule): a saved model as `predict` loads it (`prediction.load_scorers`, a fold ensemble
included), or fold adapters merged into their base, each scored as given and mirrored at
the test settings (`prediction.scorers_views`).

Apart from `evaluation`, which only reads what these jobs wrote, so that the report and the
rules that share its helpers start without the model libraries.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from arena_distill.baselines.heuristic_model import pair_features
from arena_distill.modeling.models import load_adapter, load_model, load_tokenizer
from arena_distill.report.evaluation import CALIBRATED, PROBS, compared_columns, probs_metrics
from arena_distill.scoring.calibration import Features, PairScaling, views_probs
from arena_distill.serving.prediction import View
from arena_distill.student.adapters import average_adapters


def adapter_model(base: str | Path, adapters: Sequence[str | Path], method: str):
    """A fold adapter (or the `method` average of several) merged into its base in float32, and
    the base's tokenizer."""
    tokenizer = load_tokenizer(base)
    model = load_model(base, pad_token_id=tokenizer.pad_token_id, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        adapter = Path(adapters[0])
        if len(adapters) > 1:
            adapter = Path(tmp) / "averaged"
            average_adapters(adapters, adapter, method)
        merged = load_adapter(model, adapter).merge_and_unload().eval()
    return merged, tokenizer


def tta_probs(
    views: Sequence[View], calibration: PairScaling | None = None, features: Features | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Given-order and TTA probabilities of a model's scorings, after `calibration`."""
    plain = views_probs([v for v in views if not v[1]], calibration, features)
    mirror = views_probs([v for v in views if v[1]], calibration, features)
    return plain, (plain + mirror) / 2


def views_metrics(
    views: Sequence[View], labels: np.ndarray, calibration: PairScaling | None = None, features: Features | None = None
) -> dict:
    """Plain (given order) and TTA metrics of a model's scorings, after `calibration`."""
    return probs_metrics(*tta_probs(views, calibration, features), labels)


def scored_rows(
    row_set: str,
    rows: pd.DataFrame,
    views: Sequence[View],
    calibration: PairScaling | None,
    compared: Mapping[str, PairScaling] | None = None,
) -> pd.DataFrame:
    """A model's TTA probabilities per labelled row (`PROBS`, and `CALIBRATED` after a
    calibration, and each `compared` calibration's), so the evaluation can combine models and
    post-process without scoring again."""
    compared = dict(compared or {})
    fits = [fit for fit in (calibration, *compared.values()) if fit is not None]
    features = pair_features(rows) if any(fit.uses_features for fit in fits) else None
    table = pd.DataFrame({"rows": row_set, "id": rows["id"].to_numpy(), "label": rows["label"].to_numpy()})
    table[PROBS] = tta_probs(views)[1]
    if calibration is not None:
        table[CALIBRATED] = tta_probs(views, calibration, features)[1]
    for method, fit in compared.items():
        table[compared_columns(method)] = tta_probs(views, fit, features)[1]
    return table


def holdout_scores(name: str, views: Sequence[View], rows: pd.DataFrame, calibration: PairScaling | None = None) -> dict:
    """One model's holdout metrics under its report name and, given a calibration, also as submitted."""
    labels = rows["label"].to_numpy()
    report = {name: views_metrics(views, labels)}
    if calibration is not None:
        features = pair_features(rows) if calibration.uses_features else None
        report[f"{name}, calibrated ({calibration.method})"] = views_metrics(views, labels, calibration, features)
    return report
