"""Property-based fuzzing of data preparation (`prepare_data`'s library calls).

Whatever a raw file holds, raw bytes or any cell contents, preparing it either returns a
well-typed pair table or raises a project error naming the file; never another exception,
and the rule's output is written only after success.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from arena_distill import LABELS
from arena_distill.data.tables import PAIR_COLUMNS, prepare_test, prepare_train
from arena_distill.errors import ArenaDistillError
from arena_distill.io import write_parquet

TRAIN_COLUMNS = [*PAIR_COLUMNS, *LABELS]
EXAMPLES = 700  # per test: 2,100 files in all
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

text = st.text(max_size=12)  # any code point, lone surrogates included
turns = st.lists(st.one_of(text, st.none(), st.integers()), max_size=3)
cells = st.one_of(
    text,
    turns.map(json.dumps),  # JSON lists, with nulls and non-string turns
    st.sampled_from(["", "null", "0", "1", "1.0", "2", "-1", "[", '["a"', '"hi"', "{}", "[1]", " 7 ", "nan", "\n", '"']),
    st.integers(min_value=-3, max_value=10**20).map(str),
)


@st.composite
def valid_rows(draw) -> list[list[object]]:
    """Rows of the train schema that prepare cleanly: unique ids, JSON lists of turns, one-hot labels."""
    ids = draw(st.lists(st.integers(0, 10**12), min_size=1, max_size=4, unique=True))
    rows = []
    for row_id in ids:
        texts = [json.dumps(draw(st.lists(text, min_size=1, max_size=2))) for _ in range(3)]
        winner = draw(st.integers(0, 2))
        rows.append([row_id, *texts, *(int(i == winner) for i in range(3))])
    return rows


@st.composite
def mutated_rows(draw) -> tuple[list[str], list[list[object]]]:
    """Valid rows with up to three mutations: a cell replaced by anything, a field added or
    dropped, a column renamed."""
    header, rows = list(TRAIN_COLUMNS), draw(valid_rows())
    for _ in range(draw(st.integers(0, 3))):
        row = rows[draw(st.integers(0, len(rows) - 1))]
        kind = draw(st.sampled_from(["cell", "cell", "cell", "extra field", "missing field", "rename"]))
        if kind == "extra field" or not row:
            row.append(draw(cells))
        elif kind == "rename":
            header[draw(st.integers(0, len(header) - 1))] = draw(st.sampled_from(["", "x", *TRAIN_COLUMNS]))
        else:
            column = draw(st.integers(0, len(row) - 1))
            if kind == "cell":
                row[column] = draw(cells)
            else:
                del row[column]
    return header, rows


@st.composite
def csv_bytes(draw) -> bytes:
    """A CSV file of mutated rows in one of a few encodings, sometimes a byte flipped or cut off."""
    header, rows = draw(mutated_rows())
    csv_text = pd.DataFrame([header, *rows]).to_csv(header=False, index=False)
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-16", "latin-1"]))
    # surrogatepass writes lone surrogates as the invalid UTF-8 a broken exporter leaves
    errors = "surrogatepass" if encoding != "latin-1" and draw(st.booleans()) else "replace"
    data = csv_text.encode(encoding, errors=errors)
    if draw(st.integers(0, 4)) == 0:
        position = draw(st.integers(0, len(data) - 1))
        data = data[:position] + bytes([draw(st.integers(0, 255))]) + data[position + 1 :]
    if draw(st.integers(0, 4)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return data


@st.composite
def parquet_frames(draw) -> pd.DataFrame:
    """Valid rows as a parquet table whose columns may hold any type or be missing."""
    rows = draw(valid_rows())
    frame = pd.DataFrame(rows, columns=TRAIN_COLUMNS).astype({"id": "int64"})
    any_cell = st.one_of(cells, st.none(), st.integers(-(2**40), 2**40), st.floats(allow_nan=True), st.booleans())
    for _ in range(draw(st.integers(0, 2))):
        column = draw(st.sampled_from(TRAIN_COLUMNS))
        if draw(st.booleans()):
            frame = frame.drop(columns=column, errors="ignore")
        elif column in frame:
            frame[column] = pd.Series(draw(st.lists(any_cell, min_size=len(frame), max_size=len(frame))), dtype=object)
    return frame


def prepared_or_named_error(prepare, path: Path, out: Path) -> None:
    """What `prepare_data` does with one file: a complete parquet, or a named error and nothing."""
    out.unlink(missing_ok=True)
    try:
        frame = prepare(path)
    except ArenaDistillError as error:
        event(type(error).__name__)
        assert str(path) in str(error), error
        assert not out.exists()
        return
    assert frame["id"].dtype == np.int64 and frame["id"].is_unique and len(frame) > 0
    for column in PAIR_COLUMNS[1:]:
        assert all(isinstance(turns, list) and all(isinstance(t, str) for t in turns) for turns in frame[column])
    if "label" in frame:
        assert set(frame["label"]) <= {0, 1, 2}
    write_parquet(frame, out)
    assert len(pd.read_parquet(out)) == len(frame)
    event("prepared")


@pytest.mark.parametrize("prepare", [prepare_train, prepare_test], ids=["train", "test"])
def test_any_csv_bytes_prepare_or_fail_by_name(tmp_path, prepare):
    @FUZZ
    @given(data=csv_bytes())
    def check(data: bytes) -> None:
        path = tmp_path / "raw.csv"
        path.write_bytes(data)
        prepared_or_named_error(prepare, path, tmp_path / "out.parquet")

    check()


def test_any_parquet_cells_prepare_or_fail_by_name(tmp_path):
    @FUZZ
    @given(frame=parquet_frames())
    def check(frame: pd.DataFrame) -> None:
        path = tmp_path / "raw.parquet"
        try:
            frame.to_parquet(path, index=False)
        except (pa.ArrowException, TypeError, ValueError):  # a mix pyarrow cannot store is no file a user can hand us
            return
        prepared_or_named_error(prepare_train, path, tmp_path / "out.parquet")

    check()
