"""The heuristic features model: named features, order symmetry, and learning from length."""

import json

import numpy as np
import pandas as pd
import pytest

from arena_distill.baselines.heuristic_model import (
    both_orders,
    fit_heuristic_model,
    heuristic_logits,
    joined,
    mirrored_labels,
    model_from_record,
    model_record,
    pair_features,
    score_test,
    scored_table,
)
from arena_distill.data.answer_features import (
    FEATURES,
    conciseness_sweet_spot_score,
    contradiction_ratio,
    features_of_pair,
    mediator_quality_score,
    readability_score,
    response_features,
    verbosity_penalty,
)
from arena_distill.data.pairs import SWAPPED_LABEL
from arena_distill.scoring.metrics import log_loss, prior_log_loss


def test_each_named_feature_measures_what_it_says():
    assert set(response_features("q", "An answer.")) == set(FEATURES)
    assert readability_score("The cat sat. It was warm.") > readability_score(
        "Notwithstanding considerable institutional heterogeneity, organizational differentiation perpetuates."
    )
    assert conciseness_sweet_spot_score("word " * 180) == pytest.approx(1.0)
    assert conciseness_sweet_spot_score("word " * 180) > conciseness_sweet_spot_score("word " * 5)
    assert conciseness_sweet_spot_score("word " * 180) > conciseness_sweet_spot_score("word " * 3000)
    assert verbosity_penalty("same same same same") > verbosity_penalty("four different words here")
    assert contradiction_ratio("The sky is blue today. The sky is not blue today.") == pytest.approx(0.5)
    assert contradiction_ratio("The sky is blue. Grass is green.") == 0.0
    assert mediator_quality_score("Sure, happy to help!") > 0 > mediator_quality_score("I'm sorry, as an AI I cannot do that.")


def answer(words: int) -> str:
    """A Kaggle-style cell: a JSON list holding one answer of `words` words."""
    return json.dumps([" ".join(["word"] * int(words)) + "."])


def pairs(rows: int, seed: int = 0) -> pd.DataFrame:
    """Pairs where the longer answer wins (a judge's length bias), close lengths tie."""
    rng = np.random.default_rng(seed)
    a_len, b_len = rng.integers(1, 60, rows), rng.integers(1, 60, rows)
    label = np.where(abs(a_len - b_len) < 5, 2, np.where(a_len > b_len, 0, 1))
    return pd.DataFrame(
        {
            "id": np.arange(rows),
            "prompt": [json.dumps(["a question?"])] * rows,
            "response_a": [answer(n) for n in a_len],
            "response_b": [answer(n) for n in b_len],
            "label": label,
        }
    )


def fit(rows: pd.DataFrame):
    return fit_heuristic_model(both_orders(rows)[1], mirrored_labels(rows["label"].to_numpy()))


def test_features_flip_with_the_order_and_the_model_is_symmetric():
    rows = pairs(200)
    given, mirrored = pair_features(rows)
    n = len(FEATURES)
    assert np.allclose(given[:, :n], -mirrored[:, :n]) and np.allclose(given[:, n:], mirrored[:, n:])
    # the table's features are the single pair's, as the model card's snippet computes them
    one = rows.iloc[7]
    texts = [joined(one[column]) for column in ("prompt", "response_a", "response_b")]
    assert given[7].tolist() == features_of_pair(*texts)
    assert mirrored[7].tolist() == features_of_pair(texts[0], texts[2], texts[1])
    model = fit(rows)
    index, features = both_orders(rows)
    logits = heuristic_logits(model, features)
    assert list(index["swapped"]) == [False] * 200 + [True] * 200
    assert np.allclose(np.exp(logits[:200]), np.exp(logits[200:])[:, SWAPPED_LABEL], atol=1e-6)


def test_it_learns_a_length_bias_on_unseen_pairs():
    model = fit(pairs(400, seed=1))
    test = pairs(200, seed=2)
    table = scored_table(model, "holdout", test)
    probs = table[["p_a", "p_b", "p_tie"]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert log_loss(probs, test["label"].to_numpy()) < 0.5 * prior_log_loss(test["label"].to_numpy())


def test_a_class_the_fold_never_showed_still_gets_a_small_probability():
    rows = pairs(100)
    rows = rows[rows["label"] != 2]
    logits = heuristic_logits(fit(rows), both_orders(rows)[1])
    assert np.isfinite(logits).all() and np.allclose(np.exp(logits).sum(axis=1), 1.0)
    assert (np.exp(logits[:, 2]) < 1e-3).all()


def test_a_cell_reads_the_same_from_a_kaggle_file_and_a_prepared_table():
    assert joined(json.dumps(["first turn", None, "second turn"])) == "first turn\nsecond turn"
    assert joined(np.array(["first turn", "second turn"], dtype=object)) == "first turn\nsecond turn"
    assert joined("plain text, not JSON") == "plain text, not JSON"


@pytest.mark.parametrize("with_ties", [True, False])
def test_the_saved_model_scores_as_the_fitted_one(tmp_path, with_ties):
    """The test rows are scored by their own job from the fold's saved numbers (JSON, no pickle):
    the same probabilities, three classes or two (a fold without ties)."""
    rows = pairs(300, seed=3)
    rows = rows if with_ties else rows[rows["label"] != 2]
    model = fit(rows)
    path = tmp_path / "model.json"
    path.write_text(json.dumps(model_record(model)))
    test = pairs(50, seed=4)
    score_test(str(path), test, str(tmp_path / "scored.parquet"))
    saved = pd.read_parquet(tmp_path / "scored.parquet")
    expected = scored_table(model, "test", test)
    pd.testing.assert_frame_equal(saved, expected, check_exact=False, rtol=1e-12, atol=1e-12)
    assert np.allclose(
        heuristic_logits(model_from_record(model_record(model)), both_orders(test)[1]),
        heuristic_logits(model, both_orders(test)[1]),
        rtol=0,
        atol=1e-12,
    )


def test_no_holdout_rows_score_as_an_empty_table():
    """The preset and the GPU smoke run have no holdout: the fold's holdout table is empty, not an error."""
    table = scored_table(fit(pairs(100)), "holdout", pairs(10).iloc[:0])
    assert len(table) == 0 and list(table.columns) == ["rows", "id", "label", "p_a", "p_b", "p_tie"]
