"""Stratified (optionally prompt-grouped) K-fold splits of the training table.

Only the base train rows (`source == "base"`) are split; rows of extra sets are always on
the train side of every fold, as in the 1st-place solution (the 33k set is never validated
on). With `group_by="prompt"` no prompt appears in two folds, so validation measures
unseen prompts; the bundled sample repeats each prompt ~100 times, which would otherwise
leak.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from arena_distill.data.tables import BASE_SOURCE
from arena_distill.errors import ConfigError

GROUPINGS = (None, "prompt")


def holdout_mask(base: pd.DataFrame, fraction: float, seed: int, group_by: str | None) -> np.ndarray:
    """Which base rows to set aside from every fold: `fraction` of the prompts (or rows).

    Held-out rows are never trained on by any teacher or student fold, so the final
    fold-averaged model, which has seen every fold's training rows, can still be measured
    on rows it never saw.
    """
    if not 0 <= fraction < 1:
        raise ConfigError(f"holdout must be in [0, 1), got {fraction}", key="folds.holdout")
    units = base["group"].to_numpy() if group_by == "prompt" else base["id"].to_numpy()
    unique = np.unique(units)
    chosen = np.random.default_rng(seed).permutation(unique)[: int(round(fraction * len(unique)))]
    return np.isin(units, chosen)


def make_folds(train: pd.DataFrame, n: int, seed: int, group_by: str | None = None, holdout: float = 0.0) -> dict[str, Any]:
    """Split `train` into `n` folds plus an optional holdout; returns the `folds.json` document.

    The same table, `n`, `seed`, `group_by` and `holdout` always give the same folds.
    """
    if group_by not in GROUPINGS:
        raise ConfigError(f"group_by must be one of {GROUPINGS}, got {group_by!r}", key="folds.group_by")
    if n < 2:
        raise ConfigError(f"need at least 2 folds, got {n}", key="folds.n")
    is_base = (train["source"] == BASE_SOURCE).to_numpy()
    held_out = holdout_mask(train[is_base], holdout, seed, group_by)
    holdout_ids = train[is_base].loc[held_out, "id"].tolist()
    base = train[is_base].loc[~held_out]
    extra_ids = train.loc[~is_base, "id"].tolist()
    labels = base["label"].to_numpy()
    dummy = np.zeros(len(base))
    if group_by == "prompt":
        groups = base["group"].to_numpy()
        if len(set(groups)) < n:
            raise ConfigError(f"{len(set(groups))} distinct prompts cannot fill {n} grouped folds", key="folds.n")
        splits = StratifiedGroupKFold(n_splits=n, shuffle=True, random_state=seed).split(dummy, labels, groups)
    else:
        if len(base) < n:
            raise ConfigError(f"{len(base)} base rows cannot fill {n} folds", key="folds.n")
        splits = StratifiedKFold(n_splits=n, shuffle=True, random_state=seed).split(dummy, labels)
    base_ids = base["id"].to_numpy()
    folds = []
    for fold, (train_idx, val_idx) in enumerate(splits):
        folds.append(
            {
                "fold": fold,
                "train_ids": [int(i) for i in base_ids[np.sort(train_idx)]] + [int(i) for i in extra_ids],
                "val_ids": [int(i) for i in base_ids[np.sort(val_idx)]],
            }
        )
    return {"n": n, "seed": seed, "group_by": group_by, "folds": folds, "holdout_ids": [int(i) for i in holdout_ids]}
