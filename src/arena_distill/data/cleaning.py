"""Dropping training rows that cannot teach (step 2.5 of the pipeline).

Rules, applied to the train side of each fold in this order; a row is counted under the
first rule that drops it. Validation rows are never touched, so CV scores stay comparable
with the full data.

- `empty`: response A or B has no text (all turns blank). Nothing to compare.
- `identical`: response A and B are the same text. Off by default: in the bundled data
  157 of 159 identical pairs are ties and nearly all ties are identical pairs (the 4th
  place predicted ties for identical pairs), so dropping them removes the tie class.
- `contradictory`: the same prompt and the same two responses (in either order) appear
  among the fold's train rows with labels that disagree once the order is accounted for
  (A wins in one order must be B wins in the other). Every such row is dropped: no label
  is trustworthy. Validation labels are not consulted.
- `val_overlap`: the same prompt and response pair (either order) is in this fold's
  validation rows or in the holdout. Training on it would leak the answer.
- `duplicate`: the same prompt and pair with a consistent label appears again; the first
  train row is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

RULES = ("empty", "identical", "contradictory", "val_overlap", "duplicate")
DEFAULT_RULES = ("empty", "contradictory", "val_overlap", "duplicate")
SWAP_LABEL = (1, 0, 2)
"""Label of a pair after exchanging A and B: A wins <-> B wins, tie stays tie."""


def _text(turns: Iterable[str]) -> str:
    return "\n".join(turns).strip()


def pair_keys(train: pd.DataFrame) -> pd.DataFrame:
    """Per row: an order-free key of (prompt, {A, B}) and the label in that canonical order."""
    prompt = [_text(p) for p in train["prompt"]]
    a = [_text(t) for t in train["response_a"]]
    b = [_text(t) for t in train["response_b"]]
    keys, canonical = [], []
    for p, ra, rb, label in zip(prompt, a, b, train["label"].tolist()):
        swapped = rb < ra
        keys.append((p, rb, ra) if swapped else (p, ra, rb))
        canonical.append(SWAP_LABEL[label] if swapped else label)
    return pd.DataFrame(
        {"id": train["id"].to_numpy(), "key": keys, "canonical_label": canonical, "a": a, "b": b},
        index=train.index,
    )


def contradictory_ids(keys: pd.DataFrame) -> set[int]:
    """Ids of rows whose (prompt, pair) key carries more than one canonical label."""
    labels_per_key = keys.groupby("key")["canonical_label"].nunique()
    return set(keys.index[keys["key"].isin(set(labels_per_key[labels_per_key > 1].index))])


def clean_folds(train: pd.DataFrame, folds: dict[str, Any], rules: Iterable[str] = DEFAULT_RULES) -> dict[str, Any]:
    """Return `folds` with rows removed from each train side by the enabled `rules`.

    The result has the same shape plus `cleaning`: the rules applied and, per fold, how
    many rows each rule dropped.
    """
    rules = [rule for rule in RULES if rule in set(rules)]
    keys = pair_keys(train).set_index("id")
    row_drop = {
        "empty": set(keys.index[(keys["a"] == "") | (keys["b"] == "")]),
        "identical": set(keys.index[keys["a"] == keys["b"]]),
    }
    cleaned, dropped = [], []
    for fold in folds["folds"]:
        val_keys = set(keys.loc[fold["val_ids"] + folds.get("holdout_ids", []), "key"])
        fold_drop = {**row_drop, "contradictory": contradictory_ids(keys.loc[fold["train_ids"]])}
        counts = {rule: 0 for rule in rules}
        kept, seen = [], set()
        for row_id in fold["train_ids"]:
            key = keys.at[row_id, "key"]
            reason = None
            for rule in rules:
                if rule in fold_drop:
                    hit = row_id in fold_drop[rule]
                elif rule == "val_overlap":
                    hit = key in val_keys
                else:
                    hit = key in seen
                if hit:
                    reason = rule
                    break
            if reason is None:
                kept.append(row_id)
                seen.add(key)
            else:
                counts[reason] += 1
        log.info("fold %d: kept %d of %d train rows; dropped %s", fold["fold"], len(kept), len(fold["train_ids"]), counts)
        cleaned.append({**fold, "train_ids": kept})
        dropped.append({"fold": fold["fold"], **counts})
    return {**folds, "folds": cleaned, "cleaning": {"rules": rules, "dropped": dropped}}
