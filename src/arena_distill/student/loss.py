"""Knowledge distillation: the student learns the labels and every teacher's distribution.

The loss of one row is

    (w_ce·CE(label) + Σ_teachers [w_kl·KL(teacher ‖ student) + w_cos·(1 − cos(p_teacher, p_student))])
    / (w_ce + n_teachers·(w_kl + w_cos))

with both distributions taken at temperature T. With unit weights this is the original's
(CE + KL_1 + cos_1 + KL_2 + cos_2) / 5 at T = 1. Dividing by the weight total keeps the
loss on the scale of a cross-entropy whatever the number of teachers, so one learning rate
serves any teacher set. KL is multiplied by T² so its gradient does not shrink as T grows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from arena_distill.modeling.packing import forward_logits
from arena_distill.training.tasks import ClassificationTask


@dataclass(frozen=True)
class DistillWeights:
    ce: float = 1.0
    kl: float = 1.0
    cosine: float = 1.0


def distill_loss(
    student: torch.Tensor,
    teachers: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float = 1.0,
    weights: DistillWeights = DistillWeights(),
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """The distillation loss summed over rows.

    `student`: rows × classes logits; `teachers`: rows × teachers × classes logits;
    `labels`: rows.
    """
    n_teachers = teachers.shape[1]
    total = weights.ce + n_teachers * (weights.kl + weights.cosine)
    if total <= 0:
        raise ValueError(f"the distillation weights {weights} sum to {total}: nothing to learn")
    loss = weights.ce * F.cross_entropy(student, labels, reduction="none", label_smoothing=label_smoothing)
    if n_teachers and (weights.kl or weights.cosine):
        log_q = F.log_softmax(student / temperature, dim=-1).unsqueeze(1)
        log_p = F.log_softmax(teachers / temperature, dim=-1)
        kl = (log_p.exp() * (log_p - log_q)).sum(dim=-1) * temperature**2
        cosine = 1 - F.cosine_similarity(log_p.exp(), log_q.exp().expand_as(log_p), dim=-1)
        loss = loss + (weights.kl * kl + weights.cosine * cosine).sum(dim=1)
    return (loss / total).sum()


class DistillTask(ClassificationTask):
    """The training task of `distill_student`: batches carry `label` and `teacher_logits`.

    Evaluation is the classifier's (log loss against the labels), so the student's best
    checkpoint is chosen on the same measure as a teacher's.
    """

    def __init__(self, temperature: float = 1.0, weights: DistillWeights = DistillWeights(), label_smoothing: float = 0.0):
        super().__init__(label_smoothing)
        self.temperature = temperature
        self.weights = weights

    def loss(self, model, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return distill_loss(
            forward_logits(model, batch),
            batch["teacher_logits"].float(),
            batch["label"],
            temperature=self.temperature,
            weights=self.weights,
            label_smoothing=self.label_smoothing,
        )
