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

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from arena_distill.metrics import logits_log_loss
from arena_distill.pairs import SWAPPED_LABEL


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


CALIBRATION_METHODS = ("none", "temperature", "symmetric")


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
    """

    method: str
    ab_scale: float = 1.0
    tie_scale: float = 1.0
    tie_bias: float = 0.0

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated logits (rows × [a, b, tie]) of one order's raw logits."""
        logp = torch.log_softmax(torch.as_tensor(np.asarray(logits), dtype=torch.float64), dim=1)
        return self._map(logp, torch.tensor([self.ab_scale, self.tie_scale, self.tie_bias], dtype=torch.float64)).numpy()

    @staticmethod
    def _map(logp: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        scale = torch.stack([params[0], params[0], params[1]])
        bias = torch.stack([torch.zeros_like(params[2]), torch.zeros_like(params[2]), params[2]])
        return logp * scale + bias

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "PairScaling":
        return cls(**{key: values[key] for key in ("method", "ab_scale", "tie_scale", "tie_bias")})


def views_probs(views: list[tuple[np.ndarray, bool]], calibration: PairScaling | None = None) -> np.ndarray:
    """The mean probabilities of several scorings of the same rows, each (logits, mirrored),
    a mirror's mapped back to the given order: the TTA average, after `calibration`."""
    total = 0.0
    for logits, mirrored in views:
        z = calibration.apply(logits) if calibration is not None else np.asarray(logits, dtype=np.float64)
        probs = torch.softmax(torch.as_tensor(z), dim=1).numpy()
        total = total + (probs[:, SWAPPED_LABEL] if mirrored else probs)
    return total / len(views)


def fit_pair_scaling(views: list[tuple[np.ndarray, bool]], labels: np.ndarray, method: str, max_iter: int = 200) -> PairScaling:
    """The `method` map minimizing the log loss of the TTA-averaged probabilities of `views`
    (exactly what the submission computes), by full-batch LBFGS from the identity."""
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}")
    if method == "none":
        return PairScaling("none")
    logps = [(torch.log_softmax(torch.as_tensor(np.asarray(z), dtype=torch.float64), dim=1), mirrored) for z, mirrored in views]
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    free = torch.tensor([1.0, 1.0, 0.0] if method == "symmetric" else [0.0], dtype=torch.float64, requires_grad=True)

    def params() -> torch.Tensor:
        if method == "temperature":  # one log-temperature, no bias
            inverse = torch.exp(-free[0])
            return torch.stack([inverse, inverse, torch.zeros_like(inverse)])
        return free

    def loss() -> torch.Tensor:
        probs = sum(torch.softmax(PairScaling._map(logp, params()), dim=1)[:, SWAPPED_LABEL if mirrored else [0, 1, 2]] for logp, mirrored in logps)
        return -torch.log(probs[torch.arange(len(y)), y] / len(logps)).mean()

    optimizer = torch.optim.LBFGS([free], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = loss()
        value.backward()
        return value

    optimizer.step(closure)
    ab_scale, tie_scale, tie_bias = params().detach().tolist()
    return PairScaling(method, ab_scale, tie_scale, tie_bias)
