"""Rows of a fold as model inputs: selection, A/B swaps, encoding.

A pair and its mirror (A and B exchanged) are the same judgement seen from the other side:
the label flips between A and B, a tie stays a tie. Training on both orders removes the
position bias a model would otherwise learn, and scoring both orders is the test-time
augmentation of the original.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from arena_distill.data.text import PairEncoder

SWAPPED_LABEL = np.array([1, 0, 2])
"""label → label of the mirrored pair (A wins ↔ B wins, tie stays)."""


def fold_ids(folds: Mapping[str, Any], fold: int, side: str) -> list[int]:
    """Ids of the `side` ("train" or "val") rows of `fold`, in folds.json order."""
    entry = next((f for f in folds["folds"] if f["fold"] == fold), None)
    if entry is None:
        raise ValueError(f"fold {fold} is not in folds.json (folds: {[f['fold'] for f in folds['folds']]})")
    return entry[f"{side}_ids"]


def fold_rows(table: pd.DataFrame, folds: Mapping[str, Any], fold: int, side: str) -> pd.DataFrame:
    """The `side` rows of `fold` from the prepared table, in folds.json order."""
    return table.set_index("id").loc[fold_ids(folds, fold, side)].reset_index()


def sample_pairs(rows: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """`n` of `rows` drawn with `seed`, in their table order (every row when `n` is None or not
    smaller): a budget run's subset, the same for every job that draws it with the same seed."""
    if n is None or n >= len(rows):
        return rows
    return rows.sample(n=n, random_state=seed).sort_index()


def logit_ids(ids: list[int], max_rows: int | None, seed: int = 0) -> list[int]:
    """The ids of `ids` the teachers score under `teacher_logits.max_rows`: `max_rows` of them
    drawn with a fixed seed from the ids alone (not their order), so every teacher's shards and
    the job that gathers them agree on the rows; all of them when `max_rows` is None."""
    if max_rows is None or max_rows >= len(ids):
        return list(ids)
    chosen = set(np.random.default_rng(seed).choice(np.sort(np.asarray(ids)), size=max_rows, replace=False).tolist())
    return [i for i in ids if i in chosen]


def swap_pairs(rows: pd.DataFrame) -> pd.DataFrame:
    """The mirrored copy of `rows`: responses exchanged, labels mapped, `swapped` set."""
    swapped = rows.copy()
    swapped["response_a"], swapped["response_b"] = rows["response_b"], rows["response_a"]
    if "label" in rows:
        swapped["label"] = SWAPPED_LABEL[rows["label"].to_numpy()]
    swapped["swapped"] = True
    return swapped


def with_swaps(rows: pd.DataFrame, include: bool = True) -> pd.DataFrame:
    """`rows` (swapped = False) followed by their mirrors when `include`."""
    original = rows.assign(swapped=False)
    if not include:
        return original
    return pd.concat([original, swap_pairs(rows)], ignore_index=True)


def unswap_probs(probs: np.ndarray) -> np.ndarray:
    """Probabilities of a mirrored pair expressed for the original order."""
    return probs[:, SWAPPED_LABEL]


def encode_rows(encoder: PairEncoder, rows: pd.DataFrame) -> list[list[int]]:
    """Input ids of each row. A pair and its mirror are tokenized and truncated once: the
    truncation treats A and B alike, so the mirror is the same pieces in the other order."""
    if "swapped" not in rows:
        return encoder.encode(rows["prompt"].tolist(), rows["response_a"].tolist(), rows["response_b"].tolist())
    swapped = rows["swapped"].to_numpy(dtype=bool)
    given = pd.DataFrame(
        {
            "id": rows["id"].to_numpy(),
            "prompt": rows["prompt"].to_numpy(),
            "a": np.where(swapped, rows["response_b"], rows["response_a"]),
            "b": np.where(swapped, rows["response_a"], rows["response_b"]),
        }
    ).drop_duplicates("id")
    pieces = dict(zip(given["id"], encoder.truncate(given["prompt"].tolist(), given["a"].tolist(), given["b"].tolist())))
    return [
        encoder.assemble(p, b, a) if mirrored else encoder.assemble(p, a, b)
        for (p, a, b), mirrored in zip((pieces[i] for i in rows["id"]), swapped)
    ]
