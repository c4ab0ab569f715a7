"""The report's figures: the probabilities they read and the PNGs they write."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from arena_distill.data.pairs import SWAPPED_LABEL, unswap_probs
from arena_distill.report import figures
from arena_distill.scoring.logits import logits_frame


def oof_frame(seed: int, n: int = 40, bias: float = 0.0) -> pd.DataFrame:
    """Out-of-fold logits in both orders; `bias` adds to logit A of every row (a position bias)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    rows = pd.DataFrame({"id": np.concatenate([np.arange(n), np.arange(n)]), "swapped": [False] * n + [True] * n})
    logits = rng.normal(size=(2 * n, 3))
    logits[:, 0] += bias
    return logits_frame(rows, logits, {"label": np.concatenate([labels, SWAPPED_LABEL[labels]])})


def test_oof_probs_maps_the_mirror_back_to_the_given_order():
    frame = oof_frame(0)
    table = figures.oof_probs([frame.iloc[::-1]])  # row order does not matter
    given, mirror = figures.probs_of(table, "p"), figures.probs_of(table, "m")
    swapped = frame[frame["swapped"]].sort_values("id")
    expected = unswap_probs(np.exp(swapped[["logit_a", "logit_b", "logit_tie"]].to_numpy()))
    np.testing.assert_allclose(mirror, expected / expected.sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(figures.probs_of(table, "t"), (given + mirror) / 2)
    assert table["label"].tolist() == frame[~frame["swapped"]].sort_values("id")["label"].tolist()


def test_oof_probs_needs_both_orders():
    frame = oof_frame(0)
    with pytest.raises(ValueError, match="mirror"):
        figures.oof_probs([frame[~frame["swapped"] | (frame["id"] > 0)]])


def test_position_bias_shows_in_the_title():
    """A model that favours the answer shown first gives different P(A) in the two orders."""
    fair = figures.position_bias_figure(figures.oof_probs([oof_frame(1, n=400)]))
    biased = figures.position_bias_figure(figures.oof_probs([oof_frame(1, n=400, bias=2.0)]))
    fair_title, biased_title = fair.axes[0].get_title(), biased.axes[0].get_title()
    assert float(biased_title.split("P(B) ")[1]) > 0.3 > abs(float(fair_title.split("P(B) ")[1]))


def test_every_figure_is_written_as_a_png(tmp_path):
    table = figures.oof_probs([oof_frame(2)])
    probs, labels = figures.probs_of(table, "t"), table["label"].to_numpy()
    fold = {"rows": 40, "log_loss": 0.9, "log_loss_tta": 0.8, "prior_log_loss": 1.0}
    metrics = {
        "teachers": {"llama": {"folds": [fold, fold]}},
        "student": {"folds": [fold]},
        "holdout": {"merged model (fold average)": fold},
        "test": fold,
    }
    run = {
        "steps": 10,
        "train_curve": [{"step": 5, "train_loss": 1.0}, {"step": 10, "train_loss": 0.7}],
        "history": [{"step": 10, "val_loss": 0.8}],
    }
    benchmarks = tmp_path / "results" / "benchmarks"
    (benchmarks / "train_teacher").mkdir(parents=True)
    (benchmarks / "train_teacher" / "fold0.tsv").write_text("s\th:m:s\tmax_rss\n12.5\t0:00:12\t900.1\n")
    (benchmarks / "predict.tsv").write_text("s\th:m:s\tmax_rss\n3.0\t0:00:03\t-\n")
    jobs = figures.read_benchmarks([benchmarks / "train_teacher" / "fold0.tsv", benchmarks / "predict.tsv"])
    assert jobs.fillna(-1).to_dict("records") == [
        {"job": "predict", "seconds": 3.0, "max_rss_mib": -1},  # Snakemake's "-": not measured
        {"job": "train_teacher/fold0", "seconds": 12.5, "max_rss_mib": 900.1},
    ]
    drawn = {
        "data_labels": figures.data_labels_figure({"train": labels, "calibration": np.array([2, 2, 0])}),
        "curves": figures.learning_curves_figure({"llama fold 0": run}),
        "cv": figures.cv_figure(metrics),
        "reliability": figures.reliability_figure(probs, labels),
        "confusion": figures.confusion_figure(probs, labels),
        "shares": figures.class_shares_figure({"oof": (probs, labels)}),
        "bias": figures.position_bias_figure(table),
        "jobs": figures.job_resources_figure(jobs),
    }
    for name, fig in drawn.items():
        figures.save(fig, tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == sorted(f"{name}.png" for name in drawn)
    # The CV bars: one per fold model, holdout and labelled rows, in the report's order.
    labels_drawn = [tick.get_text() for tick in drawn["cv"].axes[0].get_yticklabels()]
    assert labels_drawn == [
        "llama fold 0 (OOF)",
        "llama fold 1 (OOF)",
        "student fold 0 (OOF)",
        "merged model (fold average) (holdout)",
        "submission (labelled arena rows)",
    ]
