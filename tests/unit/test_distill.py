"""The distillation loss: its limits, its zeros and its gradients."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from arena_distill.data.pairs import logit_ids, sample_pairs
from arena_distill.errors import DataError
from arena_distill.scoring.logits import logits_frame
from arena_distill.student.distillation import covered_rows, teacher_targets
from arena_distill.student.loss import DistillTask, DistillWeights, distill_loss
from arena_distill.training.config import TrainConfig
from arena_distill.training.loop import train
from arena_distill.training.tasks import Examples
from tests.unit.synthetic import PAD, marker_pairs, tiny_classifier


def toy_batch(rows=6, teachers=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(rows, 3, generator=generator, dtype=torch.float64)
    teacher = torch.randn(rows, teachers, 3, generator=generator, dtype=torch.float64) * 2
    labels = torch.randint(0, 3, (rows,), generator=generator)
    return student, teacher, labels


def test_equals_cross_entropy_when_the_distillation_weights_are_zero():
    student, teacher, labels = toy_batch()
    loss = distill_loss(student, teacher, labels, weights=DistillWeights(ce=1, kl=0, cosine=0))
    assert torch.allclose(loss, F.cross_entropy(student, labels, reduction="sum"))


def test_teacher_terms_vanish_when_the_student_is_the_teacher():
    student, _, labels = toy_batch()
    same = student.unsqueeze(1).repeat(1, 2, 1)
    for temperature in (1.0, 2.5):
        only_teachers = distill_loss(student, same, labels, temperature=temperature, weights=DistillWeights(ce=0, kl=1, cosine=1))
        assert abs(only_teachers.item()) < 1e-12


def test_the_original_loss_is_the_mean_of_five_terms():
    student, teacher, labels = toy_batch(rows=1)
    p = F.softmax(teacher[0], dim=-1)
    q = F.softmax(student[0], dim=-1)
    kl = (p * (p.log() - q.log())).sum(dim=-1)
    cos = 1 - F.cosine_similarity(p, q.expand_as(p), dim=-1)
    expected = (F.cross_entropy(student, labels) + kl.sum() + cos.sum()) / 5
    assert torch.allclose(distill_loss(student, teacher, labels), expected)


def reference_loss(student, teachers, labels, temperature, weights, smoothing) -> float:
    """The distillation loss recomputed row by row in plain numpy from its definition: the
    smoothed cross-entropy at T = 1, and per teacher T² · KL(p_T ‖ q_T) and 1 − cos(p_T, q_T) of
    the distributions at temperature T, over the weight total."""

    def softmax(x):
        e = np.exp(x - x.max())
        return e / e.sum()

    student, teachers, labels = student.numpy(), teachers.numpy(), labels.numpy()
    classes, total = student.shape[1], weights.ce + teachers.shape[1] * (weights.kl + weights.cosine)
    loss = 0.0
    for row in range(len(student)):
        target = np.full(classes, smoothing / classes)
        target[labels[row]] += 1 - smoothing
        terms = weights.ce * -(target * np.log(softmax(student[row]))).sum()
        q = softmax(student[row] / temperature)
        for teacher in teachers[row]:
            p = softmax(teacher / temperature)
            kl = temperature**2 * (p * np.log(p / q)).sum()
            cosine = 1 - p @ q / np.sqrt((p @ p) * (q @ q))
            terms += weights.kl * kl + weights.cosine * cosine
        loss += terms / total
    return loss


@pytest.mark.parametrize("n_teachers", [1, 3])
@pytest.mark.parametrize(("temperature", "smoothing"), [(2.5, 0.0), (0.5, 0.1), (3.0, 0.2)])
def test_the_loss_is_its_definition_at_every_temperature_and_smoothing(n_teachers, temperature, smoothing):
    """By value, not only where it vanishes: a temperature ignored, KL scaled by T or not at all,
    or the smoothing dropped each moves it away from the recomputation."""
    student, teacher, labels = toy_batch(rows=5, teachers=n_teachers, seed=3)
    weights = DistillWeights(ce=0.5, kl=2.0, cosine=0.7)
    loss = distill_loss(student, teacher, labels, temperature=temperature, weights=weights, label_smoothing=smoothing)
    assert loss.item() == pytest.approx(reference_loss(student, teacher, labels, temperature, weights, smoothing), rel=1e-10)


def test_the_kl_term_carries_the_square_of_the_temperature():
    """KL alone at T and at 1 on logits scaled by 1/T: the same distributions, so T² apart."""
    student, teacher, labels = toy_batch(teachers=1, seed=4)
    kl_only = DistillWeights(ce=0, kl=1, cosine=0)
    hot = distill_loss(student, teacher, labels, temperature=4.0, weights=kl_only)
    cold = distill_loss(student / 4.0, teacher / 4.0, labels, temperature=1.0, weights=kl_only)
    assert hot.item() == pytest.approx(16.0 * cold.item(), rel=1e-10)


def test_gradient_matches_finite_differences():
    student, teacher, labels = toy_batch()
    student.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: distill_loss(s, teacher, labels, temperature=2.0, label_smoothing=0.1), (student,))


def test_the_gradient_pulls_the_student_towards_the_teacher():
    student, teacher, labels = toy_batch(teachers=1)
    student.requires_grad_(True)
    distill_loss(student, teacher, labels, weights=DistillWeights(ce=0, kl=1, cosine=0)).backward()
    moved = student.detach() - 0.5 * student.grad
    before = F.kl_div(F.log_softmax(student.detach(), -1), F.log_softmax(teacher[:, 0], -1), log_target=True, reduction="sum")
    after = F.kl_div(F.log_softmax(moved, -1), F.log_softmax(teacher[:, 0], -1), log_target=True, reduction="sum")
    assert after < before


def test_all_weights_zero_is_refused():
    student, teacher, labels = toy_batch()
    with pytest.raises(ValueError, match="nothing to learn"):
        distill_loss(student, teacher, labels, weights=DistillWeights(0, 0, 0))


def test_a_student_learns_from_teacher_logits_alone(tmp_path):
    """With the label term off and the labels scrambled, a teacher that knows the marker teaches it."""
    train_set, val_set = marker_pairs(1600, seed=1), marker_pairs(120, seed=2)
    labels = train_set.targets["label"]
    oracle = torch.nn.functional.one_hot(torch.as_tensor(labels), 3).float().numpy() * 6.0
    taught = Examples(train_set.ids, {"label": (labels + 1) % 3, "teacher_logits": oracle[:, None, :]})  # labels wrong on purpose
    model = tiny_classifier(seed=0)
    task = DistillTask(weights=DistillWeights(ce=0, kl=1, cosine=0))
    result = train(
        model,
        task,
        taught,
        val_set,
        TrainConfig(learning_rate=3e-3, epochs=3, batch_size=16, micro_batch_size=16, eval_every=20),
        pad_id=PAD,
        checkpoint_dir=tmp_path / "ckpt",
        fingerprint="kd",
    )
    assert result.metrics["val_accuracy"] > 0.9


def test_teacher_targets_align_by_row_and_order_and_name_a_missing_row(tmp_path):
    scored = pd.DataFrame({"id": [1, 1, 2, 2], "swapped": [False, True, False, True]})
    logits = np.arange(12, dtype=np.float32).reshape(4, 3)
    logits_frame(scored, logits).to_parquet(tmp_path / "t.parquet")
    (tmp_path / "cal.json").write_text(json.dumps({"scale": [2, 2, 2], "bias": [0, 0, 1], "rows": 9}))
    rows = pd.DataFrame({"id": [2, 1], "swapped": [True, False]})
    targets = teacher_targets(
        rows, {"a": [str(tmp_path / "t.parquet")], "b": [str(tmp_path / "t.parquet")]}, {"b": str(tmp_path / "cal.json")}
    )
    assert targets.shape == (2, 2, 3)
    assert targets[0, 0].tolist() == [9, 10, 11] and targets[1, 0].tolist() == [0, 1, 2]
    assert targets[0, 1].tolist() == [18, 20, 23]
    with pytest.raises(DataError, match=r"teacher 'a' has no logits .* row id 3"):
        teacher_targets(pd.DataFrame({"id": [1, 3], "swapped": [False, False]}), {"a": [str(tmp_path / "t.parquet")]}, {})


def test_a_budget_student_learns_the_rows_every_teacher_scored(tmp_path):
    """`teacher_logits.max_rows`: the subset drawn with one seed is the same for every teacher,
    and the student keeps the rows (by id and order) that every teacher's tables score."""
    pairs = pd.DataFrame({"id": np.arange(10, 20)})
    subset = sample_pairs(pairs, 4, seed=0)
    assert len(subset) == 4 and subset.equals(sample_pairs(pairs, 4, seed=0)) and subset.index.is_monotonic_increasing
    assert sample_pairs(pairs, None, seed=0) is pairs and sample_pairs(pairs, 99, seed=0) is pairs
    ids = [17, 3, 12, 9, 30, 1]
    scored = logit_ids(ids, 3)
    assert len(scored) == 3 and set(scored) == set(logit_ids(sorted(ids), 3))  # the ids decide, not their order
    assert scored == [i for i in ids if i in scored] and logit_ids(ids, None) == ids
    a = pd.DataFrame({"id": [1, 1, 2, 2, 3], "swapped": [False, True, False, True, False]})
    b = pd.DataFrame({"id": [1, 2, 3], "swapped": [False, True, False]})
    logits_frame(a, np.zeros((5, 3), dtype=np.float32)).to_parquet(tmp_path / "a.parquet")
    logits_frame(b, np.zeros((3, 3), dtype=np.float32)).to_parquet(tmp_path / "b.parquet")
    rows = pd.DataFrame({"id": [1, 1, 2, 2, 3, 3], "swapped": [False, True, False, True, False, True]})
    mask = covered_rows(rows, {"a": [str(tmp_path / "a.parquet")], "b": [str(tmp_path / "b.parquet")]})
    assert mask.tolist() == [True, False, False, True, True, False]
