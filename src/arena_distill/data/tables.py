"""Reading competition-schema tables into normalized pair tables.

Input schema (Kaggle "LMSYS - Chatbot Arena"): `id, prompt, response_a, response_b`, plus
`winner_model_a, winner_model_b, winner_tie` for training files. `prompt` and `response_*`
are JSON-encoded lists of turns. The real data is messy; every field goes through
`parse_turns`, which applies these documented rules (counted per file and column):

| input cell                              | becomes                    | counter         |
|-----------------------------------------|----------------------------|-----------------|
| JSON list of strings                    | that list                  | -               |
| `null` inside the list (`["hi", null]`) | empty turn `""`            | `null_turn`     |
| JSON `null`                             | `[]` (no turns)            | `null_field`    |
| missing cell / empty string             | `[]`                       | `missing`       |
| JSON string (`"hi"`)                    | `["hi"]`                   | `scalar`        |
| lone surrogate (`"\\ud83d"`)            | U+FFFD in its place        | `surrogate`     |
| not valid JSON                          | `[raw text]` (policy `repair`) or `FieldParseError` (policy `error`) | `bad_json` |
| JSON number/object, or a non-string turn| `FieldParseError`          | -               |

Rows are never dropped here: a row is either repaired by a rule above or rejected with a
named error. Removing rows that cannot teach is `cleaning`'s job, on the training side only.
Labels must be one-hot (`LabelError`); ids must be integers and unique (`DuplicateIdError`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from arena_distill import LABELS
from arena_distill.errors import DataError, DuplicateIdError, FieldParseError, LabelError, MissingColumnError
from arena_distill.io import read_table

log = logging.getLogger(__name__)

TEXT_COLUMNS = ("prompt", "response_a", "response_b")
PAIR_COLUMNS = ("id", *TEXT_COLUMNS)
BASE_SOURCE = "base"
BAD_JSON_POLICIES = ("repair", "error")


def fix_surrogates(text: str) -> tuple[str, bool]:
    """Replace lone UTF-16 surrogates (left by escapes like "\\ud83d") with U+FFFD.

    Python's json module accepts such escapes, but the result cannot be encoded as UTF-8,
    so parquet, tokenizers and logs would all fail on it later.
    """
    try:
        text.encode("utf-8")
        return text, False
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace"), True


def parse_turns(
    value: object,
    *,
    counts: Counter,
    bad_json: str = "repair",
    file: str = "<memory>",
    row: object = None,
    column: str | None = None,
) -> list[str]:
    """Parse one prompt/response cell into a list of turns (see the module table)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        counts["missing"] += 1
        return []
    if not isinstance(value, str):
        raise FieldParseError(f"expected JSON text, got {type(value).__name__}", file=file, row=row, column=column)
    if not value.strip():
        counts["missing"] += 1
        return []
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as err:
        if bad_json == "error":
            raise FieldParseError(f"not valid JSON ({err.msg} at char {err.pos})", file=file, row=row, column=column) from err
        counts["bad_json"] += 1
        parsed = [value]
    if parsed is None:
        counts["null_field"] += 1
        return []
    if isinstance(parsed, str):
        counts["scalar"] += 1
        parsed = [parsed]
    if not isinstance(parsed, list):
        raise FieldParseError(f"expected a JSON list of turns, got {type(parsed).__name__}", file=file, row=row, column=column)
    turns = []
    for turn in parsed:
        if turn is None:
            counts["null_turn"] += 1
            turn = ""
        elif not isinstance(turn, str):
            raise FieldParseError(f"turn is {type(turn).__name__}, not a string", file=file, row=row, column=column)
        turn, fixed = fix_surrogates(turn)
        counts["surrogate"] += fixed
        turns.append(turn)
    return turns


def prompt_group(prompt: Sequence[str]) -> str:
    """A stable hash of the prompt turns: rows with the same prompt share a fold."""
    return hashlib.sha1(json.dumps(list(prompt), ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], file: str) -> None:
    for column in columns:
        if column not in frame.columns:
            raise MissingColumnError(f"required column missing (has {list(frame.columns)})", file=file, column=column)


def _parse_ids(frame: pd.DataFrame, file: str) -> list[int]:
    ids = []
    for position, value in enumerate(frame["id"].tolist()):
        try:
            number = int(str(value).strip())
        except ValueError:
            raise DataError(
                f"id {value!r} (row {position + 1} of the table) is not an integer", file=file, row=repr(value), column="id"
            ) from None
        ids.append(number)
    seen: set[int] = set()
    for number in ids:
        if number in seen:
            raise DuplicateIdError("duplicate id", file=file, row=number, column="id")
        seen.add(number)
    return ids


def _parse_labels(frame: pd.DataFrame, ids: Sequence[int], file: str) -> list[int]:
    _require_columns(frame, LABELS, file)
    values = {}
    for column in LABELS:
        cells = []
        for row_id, value in zip(ids, frame[column].tolist()):
            text = str(value).strip()
            if text not in ("0", "1", "0.0", "1.0"):
                raise LabelError(f"label value {value!r} is not 0 or 1", file=file, row=row_id, column=column)
            cells.append(int(float(text)))
        values[column] = cells
    labels = []
    for position, row_id in enumerate(ids):
        one_hot = [values[column][position] for column in LABELS]
        if sum(one_hot) != 1:
            raise LabelError(f"labels {one_hot} are not one-hot", file=file, row=row_id, column=",".join(LABELS))
        labels.append(one_hot.index(1))
    return labels


def read_pairs(
    path: str | Path,
    *,
    with_labels: bool,
    source: str | None = None,
    bad_json: str = "repair",
) -> tuple[pd.DataFrame, dict[str, dict[str, int]]]:
    """Read one competition-schema file into the normalized pair table.

    Returns the table (`id`, `prompt`, `response_a`, `response_b` as lists of turns, `group`,
    plus `label` and `source` for training files) and the repair counts per column.
    """
    if bad_json not in BAD_JSON_POLICIES:
        raise ValueError(f"bad_json must be one of {BAD_JSON_POLICIES}, got {bad_json!r}")
    file = str(path)
    frame = read_table(path)
    _require_columns(frame, PAIR_COLUMNS, file)
    ids = _parse_ids(frame, file)
    table = pd.DataFrame({"id": pd.Series(ids, dtype="int64")})
    repairs: dict[str, dict[str, int]] = {}
    for column in TEXT_COLUMNS:
        counts: Counter = Counter()
        table[column] = [
            parse_turns(value, counts=counts, bad_json=bad_json, file=file, row=row_id, column=column)
            for row_id, value in zip(ids, frame[column].tolist())
        ]
        repairs[column] = {key: value for key, value in sorted(counts.items()) if value}
    if with_labels:
        table["label"] = pd.Series(_parse_labels(frame, ids, file), dtype="int64")
        table["source"] = source or BASE_SOURCE
    table["group"] = [prompt_group(prompt) for prompt in table["prompt"]]
    return table, repairs


def _log_repairs(file: str, rows: int, repairs: Mapping[str, Mapping[str, int]]) -> None:
    log.info("%s: %d rows read", file, rows)
    for column, counts in repairs.items():
        if counts:
            log.info("%s: repaired in %s: %s", file, column, dict(counts))


def prepare_train(base: str | Path, extra: Mapping[str, str | Path] | None = None, *, bad_json: str = "repair") -> pd.DataFrame:
    """The training table: the base train file (`source` "base") and extra always-train sets.

    Ids must be unique across all files, since folds refer to rows by id.
    """
    tables = []
    owner: dict[int, str] = {}
    for source, path in [(BASE_SOURCE, base), *(extra or {}).items()]:
        table, repairs = read_pairs(path, with_labels=True, source=source, bad_json=bad_json)
        _log_repairs(str(path), len(table), repairs)
        for row_id in table["id"].tolist():
            if row_id in owner:
                raise DuplicateIdError(f"id already used in {owner[row_id]}", file=str(path), row=row_id, column="id")
            owner[row_id] = str(path)
        tables.append(table)
    train = pd.concat(tables, ignore_index=True)
    counts = train.groupby(["source", "label"]).size().unstack(fill_value=0)
    log.info("train label counts by source (0 A, 1 B, 2 tie):\n%s", counts.to_string())
    return train


def prepare_test(path: str | Path, *, bad_json: str = "repair") -> pd.DataFrame:
    """The test table: pairs without labels (any label columns in the file are ignored)."""
    table, repairs = read_pairs(path, with_labels=False, bad_json=bad_json)
    _log_repairs(str(path), len(table), repairs)
    return table
