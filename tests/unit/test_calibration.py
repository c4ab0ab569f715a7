"""Vector scaling: it fixes mis-scaled logits and leaves calibrated ones alone."""

import numpy as np
import pytest

from arena_distill.calibration import VectorScaling, calibration_report, fit_vector_scaling
from arena_distill.metrics import logits_log_loss


def calibrated_sample(n: int = 6000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax is the true label distribution (labels drawn from it)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, 3))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(3, p=p) for p in probs])
    return logits, labels


def test_calibration_repairs_overconfident_biased_logits():
    logits, labels = calibrated_sample()
    skewed = logits * 3.0 + np.array([0.0, 0.0, 1.0])
    fitted = fit_vector_scaling(skewed, labels)
    report = calibration_report(skewed, labels, fitted)
    assert report["nll_after"] < report["nll_before"] - 0.1
    assert report["nll_after"] == pytest.approx(logits_log_loss(logits, labels), abs=0.01)
    assert np.allclose(fitted.scale, 1 / 3, atol=0.05)


def test_calibration_is_the_identity_on_calibrated_logits():
    logits, labels = calibrated_sample(seed=1)
    fitted = fit_vector_scaling(logits, labels)
    assert np.allclose(fitted.scale, 1.0, atol=0.08)
    assert np.allclose(fitted.bias, 0.0, atol=0.08)
    assert np.allclose(fitted.apply(logits), logits, atol=0.5)
    assert logits_log_loss(fitted.apply(logits), labels) == pytest.approx(logits_log_loss(logits, labels), abs=0.003)


def test_identity_scaling_changes_nothing():
    logits, _ = calibrated_sample(100)
    assert np.array_equal(VectorScaling.identity().apply(logits), logits)
