"""Post-processing of predicted (A, B, tie) probabilities: the source documents' "self-ensemble
shrink" and "no ties", each an option that is measured before anyone switches it on.

- **Shrink** pulls over-confident predictions down towards what they achieve, and leaves the
  others alone. It is fitted on out-of-fold predictions only (the student folds on their own
  validation rows): per bin of top-class confidence, the factor accuracy / confidence, capped
  at 1. A prediction's top class is scaled by its bin's factor; the mass taken from it goes to
  the other two classes in proportion to theirs. A 0.95 that is right 90 % of the time becomes
  0.90; a 0.5 that is right 60 % of the time stays 0.5.
- **No ties** follows the claim that a human preference has no real tie: P(tie) is capped at
  the larger of P(A) and P(B), the excess going to that side, so A or B always has the most
  mass. On arena votes (about a third ties) it is expected to cost log loss; the evaluation
  reports how much.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from arena_distill.scoring.metrics import validation_probs

TIE = 2
BIN_EDGES = (1 / 3, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95, 1.0)
"""Top-class confidence bins of the shrink; the first starts at 1/3, the least a top class can have."""
MIN_BIN_ROWS = 20
"""A bin with fewer out-of-fold rows keeps factor 1: too few rows to call it over-confident."""


@dataclass(frozen=True)
class Shrink:
    """Per confidence bin (`edges[i]` to `edges[i + 1]`), the factor applied to the top class."""

    edges: tuple[float, ...]
    factors: tuple[float, ...]
    rows: tuple[int, ...]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> Shrink:
        return cls(tuple(data["edges"]), tuple(data["factors"]), tuple(data["rows"]))


def confidence_bins(probs: np.ndarray, edges: Sequence[float] = BIN_EDGES) -> np.ndarray:
    """Each row's bin index by its top-class probability."""
    return np.clip(np.searchsorted(edges, probs.max(axis=1), side="right") - 1, 0, len(edges) - 2)


def fit_shrink(probs: np.ndarray, labels: np.ndarray, edges: Sequence[float] = BIN_EDGES) -> Shrink:
    """Factors from out-of-fold `probs` and their true `labels`: accuracy over mean confidence
    per bin, at most 1, and 1 where a bin has fewer than MIN_BIN_ROWS rows."""
    bins = confidence_bins(probs, edges)
    top, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    factors, rows = [], []
    for b in range(len(edges) - 1):
        inside = bins == b
        rows.append(int(inside.sum()))
        enough = inside.sum() >= MIN_BIN_ROWS
        factors.append(float(min(1.0, correct[inside].mean() / top[inside].mean())) if enough else 1.0)
    return Shrink(tuple(float(e) for e in edges), tuple(factors), tuple(rows))


def fit_shrink_out_of_fold(val_logits: Sequence[pd.DataFrame]) -> Shrink:
    """The shrink of the student folds' out-of-fold logits tables, pooled, TTA as submitted:
    what the submission rule applies and the evaluation reports."""
    _, tta, labels = validation_probs(pd.concat(val_logits, ignore_index=True))
    return fit_shrink(tta, labels)


def apply_shrink(probs: np.ndarray, shrink: Shrink) -> np.ndarray:
    """`probs` with each top class scaled by its bin's factor, the rest shared by the others."""
    probs = np.asarray(probs, dtype=np.float64)
    rows = np.arange(len(probs))
    top_class = probs.argmax(axis=1)
    top = probs[rows, top_class]
    new_top = top * np.asarray(shrink.factors)[confidence_bins(probs, shrink.edges)]
    others = probs.copy()
    others[rows, top_class] = 0.0
    rest = others.sum(axis=1)
    share = np.divide(others, rest[:, None], out=np.full_like(others, 0.5), where=rest[:, None] > 0)
    share[rows, top_class] = 0.0
    shrunk = others + share * (top - new_top)[:, None]
    shrunk[rows, top_class] = new_top
    return shrunk


def no_ties(probs: np.ndarray) -> np.ndarray:
    """P(tie) capped at max(P(A), P(B)), the excess moved to that side."""
    probs = np.array(probs, dtype=np.float64)
    side = probs[:, :TIE].argmax(axis=1)
    rows = np.arange(len(probs))
    # The capped row ends with P(tie) = P(side): (tie - side) / 2 moves across.
    excess = np.maximum(0.0, probs[:, TIE] - probs[rows, side]) / 2
    probs[:, TIE] -= excess
    probs[rows, side] += excess
    return probs
