"""The evaluation report's arithmetic and layout."""

import math

import numpy as np
import pandas as pd

from arena_distill.evaluation import holdout_name, holdout_scores, labelled_test_metrics, oof_metrics, summary_markdown
from arena_distill.calibration import PairScaling
from arena_distill.logits import logits_frame
from arena_distill.pairs import SWAPPED_LABEL


def test_test_rows_are_scored_against_their_labels():
    labels = pd.DataFrame({"id": ["1", "2", "3", "4"], "winner_model_a": ["1", "0", "0", "1"],
                           "winner_model_b": ["0", "1", "0", "0"], "winner_tie": ["0", "0", "1", "0"]})
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
    report = {"teachers": {"llama": oof_metrics(paths)}, "student": oof_metrics(paths), "student_fresh_init": oof_metrics(paths),
              "holdout": {"student fold 1": holdout, "merged model (fold average)": holdout, "student fresh-init fold average": holdout}}
    assert report["student"]["pooled"]["rows"] == 20 and len(report["student"]["folds"]) == 2
    summary = summary_markdown(report)
    for line in ("teacher llama fold 1 (OOF)", "student pooled OOF", "student fresh-init fold 1 (OOF)", "student fresh-init pooled OOF",
                 "| student fold 1 on holdout prompts | 5 | 0.5000 |", "merged model (fold average) on holdout prompts",
                 "student fresh-init fold average on holdout prompts"):
        assert line in summary, line


def test_each_holdout_job_reports_under_its_models_name():
    names = {scored: holdout_name(scored) for scored in ("student/fold0", "student/fold12", "student_fresh_init/fold1",
                                                          "student_fresh_init/average", "merged", "submission")}
    assert names == {"student/fold0": "student fold 0", "student/fold12": "student fold 12",
                     "student_fresh_init/fold1": "student fresh-init fold 1",
                     "student_fresh_init/average": "student fresh-init fold average",
                     "merged": "merged model (fold average)", "submission": "submission (quantized)"}


def test_the_exported_model_is_also_reported_as_submitted():
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(40, 3)), rng.integers(0, 3, 40)
    views = [(logits, False), (logits[:, SWAPPED_LABEL], True)]
    scaling = PairScaling(method="symmetric", ab_scale=0.5, tie_scale=1.0, tie_bias=1.0)
    report = holdout_scores("submission (quantized)", views, labels, scaling)
    raw, calibrated = report["submission (quantized)"], report["submission (quantized), calibrated (symmetric)"]
    assert raw["rows"] == calibrated["rows"] == 40 and raw["log_loss_tta"] != calibrated["log_loss_tta"]
    assert list(holdout_scores("student fold 0", views, labels)) == ["student fold 0"]
