from collections import Counter

import pandas as pd
import pytest

from arena_distill.data.tables import parse_turns, prepare_test, prepare_train, read_pairs
from arena_distill.errors import DataError, DuplicateIdError, FieldParseError, LabelError, MissingColumnError

GOOD = {"prompt": '["Hi?"]', "response_a": '["Hello"]', "response_b": '["Hey"]'}


def write_train(path, rows):
    frame = pd.DataFrame(rows)
    for column, value in {**GOOD, "winner_model_a": "1", "winner_model_b": "0", "winner_tie": "0"}.items():
        frame[column] = frame[column].fillna(value) if column in frame else value
    frame.to_csv(path, index=False)
    return path


def test_real_arena_rows_parse(arena_train_csv):
    table, repairs = read_pairs(arena_train_csv, with_labels=True)
    assert len(table) == 100
    assert table["id"].is_unique
    assert table["label"].value_counts().to_dict() == {2: 36, 1: 33, 0: 31}
    assert all(isinstance(turn, str) for column in ("prompt", "response_a", "response_b") for turns in table[column] for turn in turns)
    assert max(len(turns) for turns in table["prompt"]) == 10  # multi-turn kept as turns
    # The first row is real data: id 30192, a two-turn conversation.
    assert table.loc[0, "id"] == 30192 and len(table.loc[0, "prompt"]) == 2


@pytest.mark.parametrize(
    ("cell", "turns", "counter"),
    [
        ('["a", "b"]', ["a", "b"], None),
        ('["a", null]', ["a", ""], "null_turn"),
        ("null", [], "null_field"),
        ("[]", [], None),
        ('[""]', [""], None),
        ("", [], "missing"),
        (None, [], "missing"),
        ('"just text"', ["just text"], "scalar"),
        ('["\\ud83d smile"]', ["\ufffd smile"], "surrogate"),
        ('["\\ud83d\\ude00"]', ["\U0001f600"], None),
        ("[not json", ["[not json"], "bad_json"),
    ],
)
def test_parse_turns_rules(cell, turns, counter):
    counts = Counter()
    assert parse_turns(cell, counts=counts) == turns
    assert dict(+counts) == ({counter: 1} if counter else {})


def test_bad_json_policy_error_names_file_row_column():
    with pytest.raises(FieldParseError, match=r"file f\.csv, row id 7, column 'response_b'"):
        parse_turns("[oops", counts=Counter(), bad_json="error", file="f.csv", row=7, column="response_b")


@pytest.mark.parametrize("cell", ['{"a": 1}', "3", '[["nested"]]', "[1]"])
def test_unusable_structure_is_an_error(cell):
    with pytest.raises(FieldParseError):
        parse_turns(cell, counts=Counter())


def test_repairs_are_counted_per_column(tmp_path):
    path = write_train(tmp_path / "t.csv", [{"id": 1, "response_a": "null"}, {"id": 2, "response_a": '["x", null]'}])
    table, repairs = read_pairs(path, with_labels=True)
    assert repairs["response_a"] == {"null_field": 1, "null_turn": 1}
    assert table["response_a"].tolist() == [[], ["x", ""]]


def test_labels_must_be_one_hot(tmp_path):
    path = write_train(tmp_path / "t.csv", [{"id": 1}, {"id": 2, "winner_tie": "1"}])
    with pytest.raises(LabelError, match=r"row id 2, column 'winner_model_a,winner_model_b,winner_tie'"):
        read_pairs(path, with_labels=True)


def test_label_values_must_be_binary(tmp_path):
    path = write_train(tmp_path / "t.csv", [{"id": 1, "winner_model_b": "2"}])
    with pytest.raises(LabelError, match=r"row id 1, column 'winner_model_b'"):
        read_pairs(path, with_labels=True)


def test_duplicate_ids_are_an_error(tmp_path):
    path = write_train(tmp_path / "t.csv", [{"id": 5}, {"id": 5}])
    with pytest.raises(DuplicateIdError, match="row id 5"):
        read_pairs(path, with_labels=True)


def test_duplicate_ids_across_train_files(tmp_path):
    base = write_train(tmp_path / "base.csv", [{"id": 1}, {"id": 2}])
    extra = write_train(tmp_path / "extra.csv", [{"id": 2}])
    with pytest.raises(DuplicateIdError, match=r"extra\.csv, row id 2"):
        prepare_train(base, {"more": extra})


def test_missing_column_is_named(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"id": [1], "prompt": ['["p"]'], "response_a": ['["a"]']}).to_csv(path, index=False)
    with pytest.raises(MissingColumnError, match="column 'response_b'"):
        prepare_test(path)


def test_non_integer_id_is_named_by_its_value(tmp_path):
    path = write_train(tmp_path / "t.csv", [{"id": 7}, {"id": "abc"}])
    with pytest.raises(DataError, match=r"id 'abc' \(row 2 of the table\) is not an integer \(file .*t.csv, row id 'abc', column 'id'\)"):
        read_pairs(path, with_labels=True)


def broken_files(tmp_path):
    good = write_train(tmp_path / "good.csv", [{"id": 1}, {"id": 2}])
    text = good.read_text()
    lines = text.splitlines(keepends=True)
    cases = {
        "not_utf8.csv": (text.replace("Hello", "H\xe9llo").encode("latin-1"), r"not UTF-8 text: byte b'\\xe9' at offset \d+, line 2"),
        "empty.csv": (b"", r"the file is empty \(0 bytes\)"),
        "header_only.csv": (lines[0].encode(), r"no rows \(columns \['id', "),
        "extra_field.csv": (
            (lines[0] + lines[1].rstrip("\n") + ',"surplus"\n' + lines[2]).encode(),
            r"line 2 has more fields than the header",
        ),
        "not_parquet.parquet": (text.encode(), r"not a readable parquet file"),
    }
    for name, (content, _) in cases.items():
        (tmp_path / name).write_bytes(content)
    return {name: (tmp_path / name, message) for name, (_, message) in cases.items()}


@pytest.mark.parametrize("name", ["not_utf8.csv", "empty.csv", "header_only.csv", "extra_field.csv", "not_parquet.parquet"])
def test_a_file_that_is_not_a_table_is_named(tmp_path, name):
    path, message = broken_files(tmp_path)[name]
    with pytest.raises(DataError, match=message) as raised:
        read_pairs(path, with_labels=True)
    assert raised.value.file == str(path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"no such file \(file .*absent.csv\)"):
        prepare_test(tmp_path / "absent.csv")


def test_train_table_contract(tmp_path):
    base = write_train(tmp_path / "base.csv", [{"id": 1}, {"id": 2, "prompt": '["Other"]'}])
    extra = write_train(tmp_path / "extra.parquet.csv", [{"id": 3}])
    train = prepare_train(base, {"more": extra})
    assert list(train.columns) == ["id", "prompt", "response_a", "response_b", "label", "source", "group"]
    assert train["source"].tolist() == ["base", "base", "more"]
    assert train["group"][0] == train["group"][2] != train["group"][1]  # group = prompt hash


def test_parquet_round_trip_of_lists(tmp_path, arena_train_csv):
    table = prepare_test(arena_train_csv)
    table.to_parquet(tmp_path / "t.parquet")
    back = pd.read_parquet(tmp_path / "t.parquet")
    assert [list(turns) for turns in back["prompt"]] == table["prompt"].tolist()
