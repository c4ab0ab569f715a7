"""Logits tables: one row per (pair id, order), the teachers' output to the student.

Columns: `id`, `swapped`, `logit_a`, `logit_b`, `logit_tie` (+ context such as `fold` or
`label`). Raw logits, not probabilities: the student's loss applies its own temperature,
and calibration works on logits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from arena_distill.errors import ShardError

LOGIT_COLUMNS = ["logit_a", "logit_b", "logit_tie"]


def logits_frame(rows: pd.DataFrame, logits: np.ndarray, extra: Mapping[str, Sequence] | None = None) -> pd.DataFrame:
    """The logits table of `rows` (which carry `id` and `swapped`), plus `extra` columns."""
    frame = pd.DataFrame({"id": rows["id"].to_numpy(), "swapped": rows["swapped"].to_numpy(dtype=bool)})
    for column, values in zip(LOGIT_COLUMNS, np.asarray(logits).T):
        frame[column] = values
    for name, values in (extra or {}).items():
        frame[name] = values
    return frame


def shard_of(rows: pd.DataFrame, n_shards: int, shard: int) -> pd.DataFrame:
    """Shard `shard` of `n_shards`: every n-th row in (id, swapped) order.

    Striding over the sorted rows partitions them exactly and gives every shard a similar
    mix of lengths, so shards take about the same time.
    """
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard} is outside 0..{n_shards - 1}")
    ordered = rows.sort_values(["id", "swapped"], kind="stable").reset_index(drop=True)
    return ordered.iloc[shard::n_shards].reset_index(drop=True)


def gather_shards(shards: Mapping[str, pd.DataFrame], ids: Sequence[int]) -> pd.DataFrame:
    """One table from the shard tables; every `ids` × {original, mirror} exactly once.

    Raises `ShardError` naming the shard file and row id of the first duplicate, or the
    first missing or unexpected row, so an incomplete or stale shard never passes.
    """
    parts = []
    for path, frame in shards.items():
        parts.append(frame.assign(_shard=path))
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["id", "swapped", "_shard"])
    key = ["id", "swapped"]
    duplicated = table[table.duplicated(key, keep=False)]
    if len(duplicated):
        first = duplicated.iloc[0]
        files = sorted(set(duplicated[(duplicated["id"] == first["id"]) & (duplicated["swapped"] == first["swapped"])]["_shard"]))
        raise ShardError(
            f"scored {int((duplicated['id'] == first['id']).sum())} times (in {files})", file=files[-1], row=first["id"], column="swapped"
        )
    expected = pd.DataFrame({"id": np.repeat(np.asarray(ids, dtype=np.int64), 2), "swapped": np.tile([False, True], len(ids))})
    merged = expected.merge(table, on=key, how="outer", indicator=True)
    missing = merged[merged["_merge"] == "left_only"]
    if len(missing):
        row = missing.iloc[0]
        raise ShardError(f"not scored by any shard ({len(missing)} rows missing)", file="<all shards>", row=row["id"], column="swapped")
    unexpected = merged[merged["_merge"] == "right_only"]
    if len(unexpected):
        row = unexpected.iloc[0]
        raise ShardError(f"is not a row of this fold ({len(unexpected)} such rows)", file=row["_shard"], row=row["id"], column="id")
    return table.drop(columns="_shard").sort_values(key, kind="stable").reset_index(drop=True)
