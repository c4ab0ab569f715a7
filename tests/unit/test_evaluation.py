"""The evaluation report's arithmetic and layout."""

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from arena_distill.data.pairs import SWAPPED_LABEL
from arena_distill.report.evaluation import (
    CALIBRATED,
    PROBS,
    holdout_name,
    labelled_test_metrics,
    oof_metrics,
    option_scores,
    summary_markdown,
)
from arena_distill.report.score_holdout import holdout_scores
from arena_distill.scoring.calibration import PairScaling
from arena_distill.scoring.logits import logits_frame


def test_test_rows_are_scored_against_their_labels():
    labels = pd.DataFrame(
        {
            "id": ["1", "2", "3", "4"],
            "winner_model_a": ["1", "0", "0", "1"],
            "winner_model_b": ["0", "1", "0", "0"],
            "winner_tie": ["0", "0", "1", "0"],
        }
    )
    uniform = pd.DataFrame({"id": [4, 3, 2, 1], "winner_model_a": 1 / 3, "winner_model_b": 1 / 3, "winner_tie": 1 / 3})
    metrics = labelled_test_metrics(uniform, labels)
    assert metrics["rows"] == 4 and math.isclose(metrics["log_loss_tta"], math.log(3))
    assert math.isclose(metrics["prior_log_loss"], -(0.5 * math.log(0.5) + 0.5 * math.log(0.25)))


def test_oof_pools_the_folds_and_the_summary_lists_every_model(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for fold in range(2):
        ids = np.arange(fold * 10, fold * 10 + 10)
        labels = rng.integers(0, 3, 10)
        rows = pd.DataFrame({"id": np.concatenate([ids, ids]), "swapped": [False] * 10 + [True] * 10})
        both = np.concatenate([labels, SWAPPED_LABEL[labels]])
        frame = logits_frame(rows, rng.normal(size=(20, 3)), {"label": both})
        paths.append(tmp_path / f"fold{fold}.parquet")
        frame.to_parquet(paths[-1])
    holdout = {"rows": 5, "log_loss": 0.5, "prior_log_loss": 0.7}
    report = {
        "teachers": {"llama": oof_metrics(paths)},
        "student": oof_metrics(paths),
        "student_fresh_init": oof_metrics(paths),
        "holdout": {"student fold 1": holdout, "merged model (fold average)": holdout, "student fresh-init fold average": holdout},
    }
    assert report["student"]["pooled"]["rows"] == 20 and len(report["student"]["folds"]) == 2
    summary = summary_markdown(report)
    for line in (
        "teacher llama fold 1 (OOF)",
        "student pooled OOF",
        "student fresh-init fold 1 (OOF)",
        "student fresh-init pooled OOF",
        "| student fold 1 on holdout prompts | 5 | 0.5000 |",
        "merged model (fold average) on holdout prompts",
        "student fresh-init fold average on holdout prompts",
    ):
        assert line in summary, line


def test_each_holdout_job_reports_under_its_models_name():
    names = {
        scored: holdout_name(scored)
        for scored in ("student/fold0", "student/fold12", "student_fresh_init/fold1", "student_fresh_init/average", "merged", "submission")
    }
    assert names == {
        "student/fold0": "student fold 0",
        "student/fold12": "student fold 12",
        "student_fresh_init/fold1": "student fresh-init fold 1",
        "student_fresh_init/average": "student fresh-init fold average",
        "merged": "merged model (fold average)",
        "submission": "submission (quantized)",
    }


def test_the_exported_model_is_also_reported_as_submitted():
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(40, 3)), rng.integers(0, 3, 40)
    views = [(logits, False), (logits[:, SWAPPED_LABEL], True)]
    scaling = PairScaling(method="symmetric", ab_scale=0.5, tie_scale=1.0, tie_bias=1.0)
    rows = pd.DataFrame({"label": labels})
    report = holdout_scores("submission (quantized)", views, rows, scaling)
    raw, calibrated = report["submission (quantized)"], report["submission (quantized), calibrated (symmetric)"]
    assert raw["rows"] == calibrated["rows"] == 40 and raw["log_loss_tta"] != calibrated["log_loss_tta"]
    assert list(holdout_scores("student fold 0", views, rows)) == ["student fold 0"]


def oof_fold_files(tmp_path, losses_by_noise=(0.3, 3.0)) -> list:
    """Two folds' out-of-fold logits tables: fold 0 near its labels, fold 1 noisy."""
    rng = np.random.default_rng(1)
    paths = []
    for fold, noise in enumerate(losses_by_noise):
        ids = np.arange(fold * 60, fold * 60 + 60)
        labels = rng.integers(0, 3, 60)
        logits = 2.0 * np.eye(3)[labels] + noise * rng.normal(size=(60, 3))
        rows = pd.DataFrame({"id": np.concatenate([ids, ids]), "swapped": [False] * 60 + [True] * 60})
        frame = logits_frame(
            rows, np.vstack([logits, logits[:, SWAPPED_LABEL]]), {"label": np.concatenate([labels, SWAPPED_LABEL[labels]])}
        )
        paths.append(tmp_path / f"fold{fold}.parquet")
        frame.to_parquet(paths[-1])
    return paths


def scored_table(probs: np.ndarray, labels: np.ndarray, calibrated: np.ndarray | None = None) -> pd.DataFrame:
    """A `score_holdout` per-row table: 4 holdout rows, then 4 labelled test rows."""
    table = pd.DataFrame({"rows": ["holdout"] * 4 + ["test"] * 4, "id": [5, 6, 7, 8, 1, 2, 3, 4], "label": labels})
    table[PROBS] = probs
    if calibrated is not None:
        table[CALIBRATED] = calibrated
    return table


def test_the_options_table_compares_every_option_on_both_row_sets(tmp_path):
    labels = np.array([0, 1, 2, 0, 1, 1, 2, 0])
    right = np.full((8, 3), 0.1) + 0.7 * np.eye(3)[labels]
    uniform = np.full((8, 3), 1 / 3)
    scored = {
        "student/fold0": scored_table(right, labels),
        "student/fold1": scored_table(uniform, labels),
        "submission": scored_table(uniform, labels, calibrated=right),
    }
    result = option_scores(scored, oof_fold_files(tmp_path))
    assert result["best_fold"] == 0  # the fold with the lower out-of-fold loss
    options = result["options"]
    best = next(name for name in options if name.startswith("best fold (fold 0"))
    assert set(options[best]) == {"holdout", "test"} and options[best]["test"]["rows"] == 4
    assert math.isclose(options[best]["holdout"]["log_loss"], -math.log(0.8))
    ensemble = next(name for name in options if name.startswith("fold ensemble"))
    assert math.isclose(options[ensemble]["test"]["log_loss"], -math.log((0.8 + 1 / 3) / 2))
    assert math.isclose(options["exported model, uncalibrated"]["holdout"]["log_loss"], math.log(3))
    assert math.isclose(options["exported model, calibrated"]["test"]["log_loss"], -math.log(0.8))
    no_ties = options["exported model, calibrated, no ties"]["test"]
    assert no_ties["tie_share_predicted"] < options["exported model, calibrated"]["test"]["tie_share_predicted"]
    assert no_ties["log_loss"] > options["exported model, calibrated"]["test"]["log_loss"]  # the true tie pays
    summary = summary_markdown({"student": oof_metrics(oof_fold_files(tmp_path)), "options": result})
    assert "## Options" in summary and "| fold ensemble (2 folds, mean probabilities) |" in summary
    assert "labelled test rows log loss" in summary and "Shrink factors" in summary


@pytest.mark.parametrize(
    "module", ["report.evaluation", "serving.submission", "scoring.postprocess", "baselines.heuristic_model", "scoring.metrics"]
)
def test_the_table_only_rules_start_without_the_model_libraries(module):
    """The modules of the rules that only read tables (evaluate, submission, heuristic_model,
    the fold choice) load no torch, transformers or peft: those cost each such job seconds."""
    probe = (
        f"import sys, arena_distill.{module}\nprint(sorted(m for m in ('torch', 'transformers', 'peft', 'gptqmodel') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert loaded.stdout.strip().splitlines()[-1:] == ["[]"], loaded.stdout + loaded.stderr
