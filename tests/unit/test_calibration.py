"""Calibration: vector scaling of teacher logits and the submission's A/B-symmetric scaling."""

import numpy as np
import pytest

from arena_distill.data.pairs import SWAPPED_LABEL
from arena_distill.scoring.calibration import (
    PairScaling,
    VectorScaling,
    calibration_report,
    fit_pair_scaling,
    fit_vector_scaling,
    views_probs,
)
from arena_distill.scoring.metrics import log_loss, logits_log_loss, prior_log_loss


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


def arena_like(n: int = 4000, seed: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true logits, labels, a model's logits that under-predict ties and are over-confident):
    what a model trained on judge pairs with 1.6 % ties sees on arena votes."""
    rng = np.random.default_rng(seed)
    margin = rng.normal(0, 1.0, n)
    true = np.stack([margin, -margin, 0.3 - np.abs(margin)], axis=1)
    probs = np.exp(true) / np.exp(true).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(3, p=p) for p in probs])
    model = np.stack([2.5 * margin, -2.5 * margin, np.full(n, -4.0)], axis=1)
    return true, labels, model


def test_symmetric_scaling_restores_the_tie_share_on_rows_it_was_not_fitted_on():
    _, labels, model = arena_like()
    fit_rows, eval_rows = slice(0, 2000), slice(2000, None)
    fitted = fit_pair_scaling([(model[fit_rows], False)], labels[fit_rows], "symmetric")
    before, after = views_probs([(model[eval_rows], False)]), views_probs([(model[eval_rows], False)], fitted)
    true_share = (labels[eval_rows] == 2).mean()
    assert before[:, 2].mean() < 0.05 < 0.2 < true_share
    assert abs(after[:, 2].mean() - true_share) < 0.03
    assert log_loss(after, labels[eval_rows]) < min(log_loss(before, labels[eval_rows]) - 0.3, prior_log_loss(labels[eval_rows]))


def test_symmetric_scaling_treats_a_mirror_like_the_pair():
    _, _, model = arena_like(200)
    fitted = PairScaling("symmetric", ab_scale=0.4, tie_scale=-0.7, tie_bias=1.3)
    assert np.allclose(fitted.apply(model[:, SWAPPED_LABEL])[:, SWAPPED_LABEL], fitted.apply(model))
    # The TTA average of a pair and its exact mirror is the pair's own calibrated probability.
    assert np.allclose(views_probs([(model, False), (model[:, SWAPPED_LABEL], True)], fitted), views_probs([(model, False)], fitted))


def test_calibration_ignores_a_constant_added_to_all_three_logits():
    _, _, model = arena_like(200)
    fitted = PairScaling("symmetric", ab_scale=0.4, tie_scale=0.7, tie_bias=1.3)
    assert np.allclose(views_probs([(model + 5.0, False)], fitted), views_probs([(model, False)], fitted))


def test_temperature_is_one_shared_scale_and_finds_the_over_confidence():
    true, labels, _ = arena_like(seed=3)
    fitted = fit_pair_scaling([(true * 3.0, False)], labels, "temperature")
    assert fitted.ab_scale == fitted.tie_scale and fitted.tie_bias == 0.0
    assert fitted.ab_scale == pytest.approx(1 / 3, abs=0.04)


def test_the_fit_minimizes_the_tta_average_it_is_given():
    _, labels, model = arena_like(seed=4)
    noise = np.random.default_rng(0).normal(0, 1.0, model.shape)
    views = [(model + noise, False), ((model - noise)[:, SWAPPED_LABEL], True)]
    fitted = fit_pair_scaling(views, labels, "symmetric")
    best = log_loss(views_probs(views, fitted), labels)
    for nudge in ([0.05, 0, 0], [0, 0.05, 0], [0, 0, 0.05]):
        other = PairScaling("symmetric", *(np.array([fitted.ab_scale, fitted.tie_scale, fitted.tie_bias]) + nudge))
        assert log_loss(views_probs(views, other), labels) > best


def test_method_none_is_the_identity_and_unknown_methods_fail():
    _, labels, model = arena_like(100)
    assert fit_pair_scaling([(model, False)], labels, "none") == PairScaling("none")
    assert np.allclose(views_probs([(model, False)], PairScaling("none")), views_probs([(model, False)]))
    with pytest.raises(ValueError, match="one of"):
        fit_pair_scaling([(model, False)], labels, "isotonic")


def length_voted_pairs(n: int = 3000, seed: int = 0):
    """Pairs whose votes follow the answers' length difference (the first feature) while the
    model's logits know nothing: the signal only the features calibration can use."""
    from arena_distill.scoring.calibration import Features

    rng = np.random.default_rng(seed)
    k = 3
    a, b = rng.normal(5, 1, (n, k)), rng.normal(5, 1, (n, k))
    prompt = rng.normal(4, 1, (n, 1))
    given = np.hstack([a - b, np.abs(a - b), prompt])
    mirrored = np.hstack([b - a, np.abs(a - b), prompt])
    gap = a[:, 0] - b[:, 0]
    true_logits = np.stack([1.2 * gap, -1.2 * gap, 0.8 - 1.5 * np.abs(gap)], axis=1)
    probs = np.exp(true_logits) / np.exp(true_logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(3, p=p) for p in probs])
    logits = rng.normal(0, 0.3, (n, 3))
    views = [(logits, False), (logits[:, SWAPPED_LABEL] + rng.normal(0, 0.05, (n, 3)), True)]
    features: Features = (given, mirrored)
    return views, labels, features, true_logits


def test_the_features_calibration_learns_what_the_votes_follow_and_the_logits_miss():
    views, labels, features, true_logits = length_voted_pairs()
    symmetric = fit_pair_scaling(views, labels, "symmetric")
    fitted = fit_pair_scaling(views, labels, "features", features=features, penalty=0.001)
    plain = log_loss(views_probs(views, symmetric), labels)
    with_features = log_loss(views_probs(views, fitted, features), labels)
    best = logits_log_loss(true_logits, labels)
    assert with_features < plain - 0.15 and with_features == pytest.approx(best, abs=0.03)
    terms = fitted.terms
    assert terms.diff_weights[0] > 0.5 and max(abs(w) for w in terms.diff_weights[1:]) < 0.1
    assert terms.abs_weights[0] < -0.3, "a large gap makes a tie unlikely"
    # the tie share of the fit rows is met
    assert views_probs(views, fitted, features)[:, 2].mean() == pytest.approx((labels == 2).mean(), abs=0.02)


def test_the_features_calibration_treats_a_and_b_alike_and_survives_json():
    import json

    views, labels, features, _ = length_voted_pairs(n=400, seed=1)
    fitted = fit_pair_scaling(views, labels, "features", features=features, penalty=0.01)
    logits = views[0][0]
    given = fitted.apply(logits, features[0])
    mirror = fitted.apply(logits[:, SWAPPED_LABEL], features[1])
    assert np.allclose(mirror[:, SWAPPED_LABEL], given, atol=1e-12), "the mirror is the same map with A and B exchanged"
    loaded = PairScaling.from_dict(json.loads(json.dumps(fitted.to_dict())))
    assert loaded == fitted and np.array_equal(loaded.apply(logits, features[0]), given)
    with pytest.raises(ValueError, match="needs the pairs' answer features"):
        fitted.apply(logits)
    with pytest.raises(ValueError, match="needs the rows' answer features"):
        fit_pair_scaling(views, labels, "features")
    plain = fit_pair_scaling(views, labels, "symmetric")
    assert not plain.uses_features and np.array_equal(plain.apply(logits, features[0]), plain.apply(logits))


def test_the_feature_penalty_is_chosen_on_held_out_rows_of_the_fit():
    """Where the votes follow the features the penalty stays weak; where they follow nothing
    it is stronger, and the fitted weights shrink towards zero."""
    from arena_distill.scoring.calibration import FEATURE_PENALTIES, cross_validated_penalty

    views, labels, features, _ = length_voted_pairs(n=600, seed=2)
    signal = cross_validated_penalty(views, labels, features)
    noise = np.random.default_rng(3).permutation(labels)
    assert signal <= 0.03 and cross_validated_penalty(views, noise, features) >= 0.1
    fitted = fit_pair_scaling(views, noise, "features", features=features)
    assert fitted.terms.penalty in FEATURE_PENALTIES and max(map(abs, fitted.terms.diff_weights)) < 0.2
