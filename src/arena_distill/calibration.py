"""Vector scaling of a teacher's logits: z' = scale ⊙ z + bias, one scale and bias per class.

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


def fit_temperature(logits: np.ndarray, labels: np.ndarray, max_iter: int = 100) -> float:
    """The single temperature T minimizing the NLL of softmax(logits / T).

    One parameter cannot reorder classes, only soften or sharpen: the mildest post-hoc fix
    for a model that is over-confident on unseen rows.
    """
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.exp().item())
