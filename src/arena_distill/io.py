"""Atomic file and directory writes, and reading of the input table formats.

Every output is first written under a temporary name beside its target and renamed into
place, so an interrupted job never leaves a file that looks complete.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
from safetensors import SafetensorError

from arena_distill.errors import DataError

SNAKEMAKE_TIMESTAMP = ".snakemake_timestamp"
"""Snakemake's record of when a directory output was written. A copy of one directory output
into another must leave it behind: linked along, Snakemake touching the new output's would
also make the source look newer than what was built from it (`package_model`)."""


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    staged = tmp if directory else tmp / target.name
    try:
        yield staged
        if directory:
            if target.exists():
                shutil.rmtree(target)
            os.replace(staged, target)
        else:
            os.replace(staged, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_parquet(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def read_parquet(path: str | os.PathLike, columns: list[str] | None = None) -> pd.DataFrame:
    """A table this workflow wrote. One that is truncated or corrupted (a full disk, a copy
    cut short) raises DataError naming it, instead of pyarrow's message about footers."""
    try:
        return pd.read_parquet(path, columns=columns)
    except (pa.ArrowException, OSError) as error:
        raise DataError(
            f"cannot read this parquet file ({error}); it is truncated or corrupted: delete it and rerun the rule that writes it", file=path
        ) from None


@contextlib.contextmanager
def named_load(path: str | os.PathLike) -> Iterator[None]:
    """Loading a saved model or adapter: a truncated or corrupted weights file raises
    DataError naming the directory (safetensors' own error names no file)."""
    try:
        yield
    except SafetensorError as error:
        raise DataError(
            f"cannot load its weights ({error}); they are truncated or corrupted: delete it and rerun the rule that writes it", file=path
        ) from None


def write_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV or parquet file as given, without pandas' NA guessing.

    CSV cells are kept as text (`keep_default_na=False`): the competition data holds the
    literal string "null" inside its JSON fields, which must not become a missing value.
    A file that cannot be a table (missing, 0 bytes, not UTF-8, a row with more fields than
    the header, not parquet) or one with a header and no rows raises `DataError` naming it.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise ValueError(f"unsupported table format {suffix!r} for {path}: use .csv or .parquet")
    if not path.is_file():
        raise DataError("no such file", file=path)
    if path.stat().st_size == 0:
        raise DataError("the file is empty (0 bytes)", file=path)
    if suffix == ".csv":
        frame = read_csv_text(path)
    else:
        try:
            frame = pd.read_parquet(path)
        except (pa.ArrowException, OSError) as error:
            raise DataError(f"not a readable parquet file ({error})", file=path) from None
    if frame.empty:
        raise DataError(f"no rows (columns {list(frame.columns)})", file=path)
    return frame


def read_csv_text(path: Path) -> pd.DataFrame:
    """Every cell as text. The bytes are checked to be UTF-8 first, so that every later error
    (pandas', or finding a ragged line) reads valid text. No index column is ever inferred:
    pandas would otherwise take a first row with one field too many as an index and shift
    every column of the file silently."""
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(
            f"not UTF-8 text: byte {raw[error.start : error.start + 1]!r} at offset {error.start}, line {line}; re-save the file as UTF-8",
            file=path,
        ) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8", index_col=False)
    except pd.errors.ParserWarning:
        raise DataError(f"line {ragged_line(path)} has more fields than the header", file=path) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise DataError(f"not a CSV table: {str(error).strip()}", file=path) from None


def ragged_line(path: Path) -> int:
    """The first physical line where a CSV record has another field count than the header."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        width = len(next(reader))
        start = reader.line_num + 1
        for record in reader:
            if len(record) != width:
                return start
            start = reader.line_num + 1
    return start


def read_benchmark(path: str | os.PathLike) -> dict[str, float | None] | None:
    """The last row of a Snakemake `benchmark:` file as {"seconds", "max_rss_mib"} (None where
    Snakemake measured nothing: it writes "-" or "NA"); None for a file without rows."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if not rows:
        return None

    def value(text: str) -> float | None:
        try:
            return float(text)
        except ValueError:
            return None

    return {"seconds": value(rows[-1]["s"]), "max_rss_mib": value(rows[-1]["max_rss"])}
