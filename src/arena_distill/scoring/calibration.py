"""Post-hoc calibration: vector scaling of a teacher's logits (step 4.5) and the
submission's A/B-symmetric scaling (`PairScaling`, fitted by `calibrate_submission`).

Vector scaling of a teacher's logits: z' = scale ⊙ z + bias, one scale and bias per class.

Teachers trained in-sample for two epochs can be over- or under-confident, and the student
copies whatever confidence its soft targets carry. Vector scaling (Guo et al., 2017) is
the smallest fix that can also correct a class bias (ties are the odd class here). It is
fitted on out-of-fold logits only: on a teacher's own training rows its confidence says
nothing about its calibration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from arena_distill.data.pairs import SWAPPED_LABEL
from arena_distill.scoring.metrics import logits_log_loss


@dataclass(frozen=True)
class VectorScaling:
    scale: list[float]
    bias: list[float]

    @classmethod
    def identity(cls, n_classes: int = 3) -> "VectorScaling":
        return cls(scale=[1.0] * n_classes, bias=[0.0] * n_classes)

    def apply(self, logits: np.ndarray) -> np.ndarray:
        return np.asarray(logits, dtype=np.float64) * np.asarray(self.scale) + np.asarray(self.bias)

    def to_dict(self) -> dict:
        return asdict(self)


def fit_vector_scaling(logits: np.ndarray, labels: np.ndarray, max_iter: int = 200) -> VectorScaling:
    """The scale and bias minimizing the NLL of `labels`, by full-batch LBFGS from identity."""
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    scale = torch.ones(z.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([scale, bias], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(z * scale + bias, y)
        loss.backward()
        return loss

    optimizer.step(closure)
    # Only differences between classes matter to softmax: centre the bias for a unique answer.
    centred = bias.detach() - bias.detach().mean()
    return VectorScaling(scale=scale.detach().tolist(), bias=centred.tolist())


def calibration_report(logits: np.ndarray, labels: np.ndarray, fitted: VectorScaling) -> dict:
    """NLL before and after applying `fitted`, with the parameters, as written to JSON."""
    return {
        **fitted.to_dict(),
        "rows": int(len(labels)),
        "nll_before": logits_log_loss(logits, labels),
        "nll_after": logits_log_loss(fitted.apply(logits), labels),
    }


CALIBRATION_METHODS = ("none", "temperature", "symmetric", "features")

Features = tuple[np.ndarray, np.ndarray]
"""A pair table's answer features as given and mirrored (`heuristic_model.pair_features`):
per row, the A - B differences of each feature (which flip sign with the order), their absolute
values and the prompt's log length (which do not)."""


@dataclass(frozen=True)
class FeatureTerms:
    """The answer-feature part of a `features` calibration: standardized A - B differences
    move A and B apart (+ to A, - to B), their absolute values and the prompt length move
    the tie. The difference features are scaled but not centred, so a mirrored pair's terms
    are exactly the given pair's with A and B exchanged."""

    diff_weights: list[float]
    abs_weights: list[float]
    prompt_weight: float
    diff_scale: list[float]
    abs_mean: list[float]
    abs_scale: list[float]
    prompt_mean: float
    prompt_scale: float
    penalty: float
    """The L2 penalty the weights were fitted with."""

    @classmethod
    def standardizing(cls, features: np.ndarray, penalty: float) -> "FeatureTerms":
        """Zero weights with the scales of `features` (the given order's)."""
        k = (features.shape[1] - 1) // 2
        spread = features.std(axis=0)
        spread = np.where(spread > 0, spread, 1.0)
        diff_scale = np.sqrt((features[:, :k] ** 2).mean(axis=0))
        return cls(
            [0.0] * k,
            [0.0] * k,
            0.0,
            np.where(diff_scale > 0, diff_scale, 1.0).tolist(),
            features[:, k : 2 * k].mean(axis=0).tolist(),
            spread[k : 2 * k].tolist(),
            float(features[:, -1].mean()),
            float(spread[-1]),
            penalty,
        )

    def standardized(self, features: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(A - B differences, tie features) of `features`, in the fitted scales."""
        k = len(self.diff_weights)
        x = torch.as_tensor(np.asarray(features), dtype=torch.float64)
        diffs = x[:, :k] / torch.tensor(self.diff_scale, dtype=torch.float64)
        ties = torch.cat(
            [
                (x[:, k : 2 * k] - torch.tensor(self.abs_mean, dtype=torch.float64)) / torch.tensor(self.abs_scale, dtype=torch.float64),
                ((x[:, -1:] - self.prompt_mean) / self.prompt_scale),
            ],
            dim=1,
        )
        return diffs, ties


def feature_offsets(diffs: torch.Tensor, ties: torch.Tensor, diff_weights: torch.Tensor, tie_weights: torch.Tensor) -> torch.Tensor:
    """What the answer features add to the calibrated logits (rows x [a, b, tie])."""
    apart = diffs @ diff_weights
    return torch.stack([apart, -apart, ties @ tie_weights], dim=1)


@dataclass(frozen=True)
class PairScaling:
    """The submission's post-hoc calibration of one order's logits, symmetric in A and B.

    On the log-probabilities ℓ = log_softmax(z): ℓ'_A = s·ℓ_A, ℓ'_B = s·ℓ_B, ℓ'_tie =
    t·ℓ_tie + b. Tying A and B keeps the A/B-swap TTA meaningful (a mirror gets the same
    map); the tie's own scale and bias move the tie share to what the fitting rows show and
    may even invert the model's tie score (t < 0) where its training labels' ties meant
    something else than the target's. `temperature` is the special
    case s = t = 1/T, b = 0. Working on log-probabilities makes the map independent of
    the constant a classifier head may add to all three logits.

    `features` adds the pair's answer features (`FeatureTerms`), linear in the logits: the
    cheap signals human votes follow (length, lists, headers) that a small student may not
    have learnt. A and B stay exchangeable, so TTA still averages two views of one map.
    """

    method: str
    ab_scale: float = 1.0
    tie_scale: float = 1.0
    tie_bias: float = 0.0
    terms: FeatureTerms | None = None

    @property
    def uses_features(self) -> bool:
        return self.terms is not None

    def apply(self, logits: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
        """Calibrated logits (rows × [a, b, tie]) of one order's raw logits (and, for
        `features`, that order's answer features)."""
        logp = torch.log_softmax(torch.as_tensor(np.asarray(logits), dtype=torch.float64), dim=1)
        mapped = self._map(logp, torch.tensor([self.ab_scale, self.tie_scale, self.tie_bias], dtype=torch.float64))
        if self.terms is not None:
            if features is None:
                raise ValueError("a features calibration needs the pairs' answer features")
            terms = self.terms
            weights = torch.tensor(terms.diff_weights, dtype=torch.float64)
            tie_weights = torch.tensor([*terms.abs_weights, terms.prompt_weight], dtype=torch.float64)
            mapped = mapped + feature_offsets(*terms.standardized(features), weights, tie_weights)
        return mapped.numpy()

    @staticmethod
    def _map(logp: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        scale = torch.stack([params[0], params[0], params[1]])
        bias = torch.stack([torch.zeros_like(params[2]), torch.zeros_like(params[2]), params[2]])
        return logp * scale + bias

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "PairScaling":
        terms = values.get("terms")
        return cls(
            **{key: values[key] for key in ("method", "ab_scale", "tie_scale", "tie_bias")}, terms=FeatureTerms(**terms) if terms else None
        )


def views_probs(
    views: list[tuple[np.ndarray, bool]], calibration: PairScaling | None = None, features: Features | None = None
) -> np.ndarray:
    """The mean probabilities of several scorings of the same rows, each (logits, mirrored),
    a mirror's mapped back to the given order: the TTA average, after `calibration` (whose
    `features` variant reads the rows' answer features in the view's order)."""
    total = 0.0
    for logits, mirrored in views:
        if calibration is None:
            z = np.asarray(logits, dtype=np.float64)
        else:
            z = calibration.apply(logits, None if features is None else features[1 if mirrored else 0])
        probs = torch.softmax(torch.as_tensor(z), dim=1).numpy()
        total = total + (probs[:, SWAPPED_LABEL] if mirrored else probs)
    return total / len(views)


FEATURE_PENALTIES = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
"""L2 penalties on the answer features' weights (standardized features) a `features` fit
chooses from by cross-validation on its rows: ~30 weights on a few hundred votes chase noise
unless held back, on thousands they need not be."""


def row_subset(views: list[tuple[np.ndarray, bool]], features: Features, rows: np.ndarray) -> tuple[list, Features]:
    """The views and features of some rows (by position)."""
    return [(np.asarray(z)[rows], mirrored) for z, mirrored in views], (features[0][rows], features[1][rows])


def cross_validated_penalty(
    views: list[tuple[np.ndarray, bool]],
    labels: np.ndarray,
    features: Features,
    penalties: Sequence[float] = FEATURE_PENALTIES,
    folds: int = 5,
    seed: int = 0,
) -> float:
    """The penalty of a `features` fit whose `folds`-fold held-out log loss on these rows is
    lowest (rows split at random with `seed`; ties to the stronger penalty)."""
    parts = np.array_split(np.random.default_rng(seed).permutation(len(labels)), folds)
    losses = []
    for penalty in penalties:
        total = 0.0
        for part in parts:
            rest = np.setdiff1d(np.arange(len(labels)), part)
            fit_views, fit_features = row_subset(views, features, rest)
            fit = fit_pair_scaling(fit_views, labels[rest], "features", features=fit_features, penalty=penalty)
            held_views, held_features = row_subset(views, features, part)
            probs = views_probs(held_views, fit, held_features)
            total += -np.log(np.clip(probs[np.arange(len(part)), labels[part]], 1e-15, None)).sum()
        losses.append(total / len(labels))
    best = min(losses)
    return max(penalty for penalty, loss in zip(penalties, losses) if loss == best)


def fit_pair_scaling(
    views: list[tuple[np.ndarray, bool]],
    labels: np.ndarray,
    method: str,
    max_iter: int = 200,
    features: Features | None = None,
    penalty: float | None = None,
) -> PairScaling:
    """The `method` map minimizing the log loss of the TTA-averaged probabilities of `views`
    (exactly what the submission computes), by full-batch LBFGS from the identity; `features`
    (the rows' answer features) for the `features` method, whose weights get an L2 `penalty`
    (None: `cross_validated_penalty`)."""
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}")
    if method == "none":
        return PairScaling("none")
    if method == "features" and features is None:
        raise ValueError("the features calibration needs the rows' answer features")
    if method == "features" and penalty is None:
        penalty = cross_validated_penalty(views, np.asarray(labels), features)
    logps = [(torch.log_softmax(torch.as_tensor(np.asarray(z), dtype=torch.float64), dim=1), mirrored) for z, mirrored in views]
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    terms = FeatureTerms.standardizing(features[0], penalty) if method == "features" else None
    standardized = [terms.standardized(f) for f in features] if terms else None
    k = len(terms.diff_weights) if terms else 0
    start = [1.0, 1.0, 0.0] if method in ("symmetric", "features") else [0.0]
    free = torch.tensor(start + [0.0] * (2 * k + 1 if terms else 0), dtype=torch.float64, requires_grad=True)

    def params() -> torch.Tensor:
        if method == "temperature":  # one log-temperature, no bias
            inverse = torch.exp(-free[0])
            return torch.stack([inverse, inverse, torch.zeros_like(inverse)])
        return free[:3]

    def view_logits(logp: torch.Tensor, mirrored: bool) -> torch.Tensor:
        mapped = PairScaling._map(logp, params())
        if terms is None:
            return mapped
        diffs, ties = standardized[1 if mirrored else 0]
        return mapped + feature_offsets(diffs, ties, free[3 : 3 + k], free[3 + k :])

    def loss() -> torch.Tensor:
        probs = sum(
            torch.softmax(view_logits(logp, mirrored), dim=1)[:, SWAPPED_LABEL if mirrored else [0, 1, 2]] for logp, mirrored in logps
        )
        nll = -torch.log(probs[torch.arange(len(y)), y] / len(logps)).mean()
        return nll + penalty * (free[3:] ** 2).sum() if terms else nll

    optimizer = torch.optim.LBFGS([free], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = loss()
        value.backward()
        return value

    optimizer.step(closure)
    ab_scale, tie_scale, tie_bias = params().detach().tolist()
    if terms is not None:
        weights = free.detach()[3:].tolist()
        terms = replace(terms, diff_weights=weights[:k], abs_weights=weights[k : 2 * k], prompt_weight=weights[2 * k])
    return PairScaling(method, ab_scale, tie_scale, tie_bias, terms)
