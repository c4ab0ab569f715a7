"""Scores of 3-class predictions: the competition's log loss, accuracy, the class prior, and
the same read from a logits table with its mirrored rows (plain and A/B-swap TTA).

No torch here: the rules that only read tables (evaluation, submission, the heuristic
model, fold choice) import this module and start in a second, not in several."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import log_softmax, softmax

from arena_distill import LABELS
from arena_distill.data.pairs import unswap_probs
from arena_distill.scoring.logits import LOGIT_COLUMNS

EPS = 1e-15
"""Probabilities are clipped to [EPS, 1 - EPS] as the competition's metric did."""


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of `labels` under row-normalized `probs`."""
    probs = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1 - EPS)
    probs = probs / probs.sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(probs[np.arange(len(labels)), labels])))


def logits_log_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    """Log loss of the softmax of `logits`, computed stably in log space."""
    logp = log_softmax(np.asarray(logits, dtype=np.float64), axis=1)
    return float(-np.mean(logp[np.arange(len(labels)), labels]))


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(scores, axis=1) == labels))


def prior_log_loss(labels: np.ndarray, n_classes: int = 3) -> float:
    """Log loss of always predicting the class frequencies of `labels` themselves."""
    freq = np.bincount(labels, minlength=n_classes) / len(labels)
    return log_loss(np.tile(freq, (len(labels), 1)), labels)


def labelled_rows(submission: pd.DataFrame, labels: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """A submission's probabilities and the true classes of its labelled rows, matched by id
    (`labels` in the submission's one-hot schema, as the test labels file has them)."""
    labels = labels.astype({"id": np.int64, **dict.fromkeys(LABELS, np.int64)})
    joined = labels.merge(submission, on="id", suffixes=("_true", ""))
    truth = joined[[f"{label}_true" for label in LABELS]].to_numpy(dtype=np.int64).argmax(axis=1)
    return joined[list(LABELS)].to_numpy(dtype=np.float64), truth


def validation_probs(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Given-order probabilities, TTA probabilities (None without every mirror) and labels of
    a logits table, by id. TTA averages the probabilities of each pair and of its mirror
    mapped back to the original order; the labels are those of the original rows."""
    original = frame[~frame["swapped"]].sort_values("id")
    plain = softmax(original[LOGIT_COLUMNS].to_numpy(), axis=1)
    labels = original["label"].to_numpy()
    mirrored = frame[frame["swapped"]].sort_values("id")
    if len(mirrored) != len(original) or not (mirrored["id"].to_numpy() == original["id"].to_numpy()).all():
        return plain, None, labels
    return plain, (plain + unswap_probs(softmax(mirrored[LOGIT_COLUMNS].to_numpy(), axis=1))) / 2, labels


def validation_metrics(frame: pd.DataFrame) -> dict[str, float]:
    """Log loss and accuracy of a logits table with labels, plain and with A/B-swap TTA."""
    plain, tta, labels = validation_probs(frame)
    logits = frame[~frame["swapped"]].sort_values("id")[LOGIT_COLUMNS].to_numpy()
    metrics = {
        "val_rows": len(labels),
        "val_log_loss": logits_log_loss(logits, labels),  # from the logits: exact where a softmax rounds to 0
        "val_accuracy": accuracy(plain, labels),
        "val_prior_log_loss": prior_log_loss(labels),
    }
    if tta is not None:
        metrics["val_log_loss_tta"] = log_loss(tta, labels)
        metrics["val_accuracy_tta"] = accuracy(tta, labels)
    return metrics
