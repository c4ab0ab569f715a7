"""Post-processing options: shrink fitted on out-of-fold rows, and no ties."""

import numpy as np
import pytest

from arena_distill.scoring.metrics import log_loss
from arena_distill.scoring.postprocess import MIN_BIN_ROWS, Shrink, apply_shrink, confidence_bins, fit_shrink, no_ties


def overconfident(rows: int, confidence: float, accuracy: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows predicting class 0 at `confidence` (the rest split evenly), right `accuracy` of the time."""
    rng = np.random.default_rng(seed)
    probs = np.tile([confidence, (1 - confidence) / 2, (1 - confidence) / 2], (rows, 1))
    labels = np.where(rng.random(rows) < accuracy, 0, rng.integers(1, 3, rows))
    return probs, labels


def test_shrink_pulls_overconfident_rows_to_their_accuracy_and_leaves_the_rest():
    sure, sure_labels = overconfident(400, 0.96, 0.90, seed=0)
    unsure, unsure_labels = overconfident(400, 0.50, 0.70, seed=1)  # under-confident: stays
    shrink = fit_shrink(np.vstack([sure, unsure]), np.concatenate([sure_labels, unsure_labels]))
    shrunk = apply_shrink(np.vstack([sure, unsure]), shrink)
    assert np.allclose(shrunk.sum(axis=1), 1.0)
    assert shrunk[0, 0] == pytest.approx((sure_labels == 0).mean(), abs=1e-9)  # 0.96 -> its accuracy, ~0.90
    assert shrunk[0, 1] == pytest.approx(shrunk[0, 2])  # the taken mass shared by the others alike
    assert np.allclose(shrunk[400:], unsure)
    assert all(f <= 1.0 for f in shrink.factors)
    # fitted on these rows, it lowers their log loss
    labels = np.concatenate([sure_labels, unsure_labels])
    assert log_loss(shrunk, labels) < log_loss(np.vstack([sure, unsure]), labels)


def test_a_bin_with_too_few_rows_is_left_alone():
    probs, labels = overconfident(MIN_BIN_ROWS - 1, 0.96, 0.5, seed=2)
    assert set(fit_shrink(probs, labels).factors) == {1.0}


def test_the_shrink_round_trips_through_its_saved_form():
    shrink = Shrink(edges=(1 / 3, 0.6, 1.0), factors=(1.0, 0.9), rows=(10, 30))
    assert Shrink.from_dict(shrink.to_dict()) == shrink
    probs = np.array([[0.2, 0.7, 0.1], [0.4, 0.35, 0.25]])
    assert list(confidence_bins(probs, shrink.edges)) == [1, 0]
    assert apply_shrink(probs, shrink)[0, 1] == pytest.approx(0.63)


def test_no_ties_caps_the_tie_at_the_favoured_side_and_keeps_other_rows():
    probs = np.array([[0.2, 0.1, 0.7], [0.5, 0.3, 0.2], [0.1, 0.3, 0.6]])
    capped = no_ties(probs)
    assert np.allclose(capped.sum(axis=1), 1.0)
    assert capped[0] == pytest.approx([0.45, 0.1, 0.45])  # (0.7 - 0.2) / 2 moves to A
    assert capped[1] == pytest.approx(probs[1])  # A already leads: unchanged
    assert capped[2] == pytest.approx([0.1, 0.45, 0.45])
    assert (capped[:, 2] <= capped[:, :2].max(axis=1) + 1e-12).all()
