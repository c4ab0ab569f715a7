"""The submission table: its columns, its checks, its file.

Light on purpose (pandas and numpy only): the `submission` rule and the command line's
argument checks use it without loading a model library.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from arena_distill import LABELS
from arena_distill.errors import DataError
from arena_distill.io import atomic_path

SUBMISSION_COLUMNS = ["id", *LABELS]


def probs_frame(ids: Sequence[int], probs: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame({"id": np.asarray(ids, dtype=np.int64)})
    for i, label in enumerate(LABELS):
        frame[label] = probs[:, i]
    return frame


def check_submission(frame: pd.DataFrame, ids: Sequence[int], file: str) -> None:
    """Raise DataError unless `frame` is a valid submission for exactly `ids`."""
    if list(frame.columns) != SUBMISSION_COLUMNS:
        raise DataError(f"columns are {list(frame.columns)}, expected {SUBMISSION_COLUMNS}", file=file)
    if sorted(frame["id"].tolist()) != sorted(int(i) for i in ids) or frame["id"].duplicated().any():
        extra = sorted(set(frame["id"]) ^ set(int(i) for i in ids)) or frame.loc[frame["id"].duplicated(), "id"].tolist()
        raise DataError("ids differ from the test ids", file=file, row=extra[0] if extra else None, column="id")
    values = frame[list(LABELS)].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values).all(axis=1) | (values < 0).any(axis=1) | (values > 1).any(axis=1) | (np.abs(values.sum(axis=1) - 1) > 1e-6)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"probabilities {values[row].tolist()} are not a distribution", file=file, row=int(frame["id"].iloc[row]), column=LABELS[0]
        )


def check_output_path(path: str | Path) -> None:
    """Refuse an output format other than CSV or parquet before any work is done."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise ValueError(f"unsupported output format {suffix!r} for {path}: use .csv or .parquet")


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    """CSV or parquet by suffix, written atomically."""
    check_output_path(path)
    suffix = Path(path).suffix.lower()
    with atomic_path(path) as tmp:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False, float_format="%.8f")
        else:
            frame.to_parquet(tmp, index=False)
