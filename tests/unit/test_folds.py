import numpy as np
import pandas as pd
import pytest

from arena_distill.data.cleaning import RULES, clean_folds
from arena_distill.data.folds import make_folds
from arena_distill.errors import ConfigError


def synthetic_train(n_prompts=40, rows_per_prompt=6, n_extra=15, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_prompts):
        for r in range(rows_per_prompt):
            rows.append({"id": len(rows), "label": int(rng.choice(3, p=[0.45, 0.45, 0.10])), "source": "base", "group": f"g{p}"})
    for e in range(n_extra):
        rows.append({"id": 10_000 + e, "label": int(rng.integers(3)), "source": "extra", "group": f"x{e}"})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("group_by", [None, "prompt"])
def test_every_base_row_validated_once_and_extra_always_train(group_by):
    train = synthetic_train()
    folds = make_folds(train, n=5, seed=2025, group_by=group_by)
    base_ids = set(train.loc[train.source == "base", "id"])
    extra_ids = set(train.loc[train.source == "extra", "id"])
    val = [i for fold in folds["folds"] for i in fold["val_ids"]]
    assert sorted(val) == sorted(base_ids)
    for fold in folds["folds"]:
        assert extra_ids <= set(fold["train_ids"])
        assert not set(fold["train_ids"]) & set(fold["val_ids"])
        assert set(fold["train_ids"]) | set(fold["val_ids"]) == base_ids | extra_ids


@pytest.mark.parametrize("group_by", [None, "prompt"])
def test_the_holdout_is_in_no_fold(group_by):
    train = synthetic_train()
    folds = make_folds(train, n=3, seed=2025, group_by=group_by, holdout=0.25)
    held = set(folds["holdout_ids"])
    base = train[train.source == "base"]
    assert len(held) == pytest.approx(0.25 * len(base), abs=6)
    for fold in folds["folds"]:
        assert not held & (set(fold["train_ids"]) | set(fold["val_ids"]))
    val = [i for fold in folds["folds"] for i in fold["val_ids"]]
    assert sorted(val + sorted(held)) == sorted(base["id"])
    if group_by == "prompt":
        groups = train.set_index("id")["group"]
        assert not set(groups[list(held)]) & set(groups[val])
    assert make_folds(train, n=3, seed=2025, group_by=group_by, holdout=0.25) == folds
    assert make_folds(train, n=3, seed=2025, group_by=group_by)["holdout_ids"] == []


def test_stratified_within_one_row_per_class():
    train = synthetic_train()
    folds = make_folds(train, n=5, seed=2025)
    labels = train.set_index("id")["label"]
    base = labels[train.set_index("id")["source"] == "base"]
    for cls, total in base.value_counts().items():
        per_fold = [int((labels[fold["val_ids"]] == cls).sum()) for fold in folds["folds"]]
        assert max(per_fold) - min(per_fold) <= 1, (cls, per_fold)
        assert sum(per_fold) == total


def test_grouped_folds_never_split_a_prompt():
    train = synthetic_train()
    folds = make_folds(train, n=5, seed=2025, group_by="prompt")
    group = train.set_index("id")["group"]
    seen = {}
    for fold in folds["folds"]:
        for g in set(group[fold["val_ids"]]):
            assert g not in seen, f"prompt {g} in folds {seen[g]} and {fold['fold']}"
            seen[g] = fold["fold"]


def test_same_seed_same_folds_other_seed_other_folds():
    train = synthetic_train()
    assert make_folds(train, 5, 7, "prompt") == make_folds(train, 5, 7, "prompt")
    assert make_folds(train, 5, 7, "prompt") != make_folds(train, 5, 8, "prompt")


def test_too_few_groups_names_the_key():
    with pytest.raises(ConfigError, match="folds.n"):
        make_folds(synthetic_train(n_prompts=3), n=5, seed=0, group_by="prompt")


def pairs(rows):
    return pd.DataFrame(
        [
            {"id": i, "prompt": [p], "response_a": [a], "response_b": [b], "label": label, "source": "base", "group": p}
            for i, (p, a, b, label) in enumerate(rows)
        ]
    )


def test_cleaning_rules_and_counts():
    train = pairs(
        [
            ("p1", "x", "y", 0),  # 0 kept
            ("p1", "y", "x", 1),  # 1 same pair swapped, consistent label -> duplicate
            ("p2", "x", "y", 0),  # 2 contradicts 3 (same order, other winner)
            ("p2", "x", "y", 1),  # 3
            ("p3", "", "y", 0),  # 4 empty response
            ("p4", "same", "same", 2),  # 5 identical
            ("p5", "u", "v", 2),  # 6 also in validation -> leak
            ("p5", "v", "u", 2),  # 7 validation row
            ("p6", "m", "n", 1),  # 8 kept
        ]
    )
    folds = {"n": 1, "seed": 0, "group_by": None, "folds": [{"fold": 0, "train_ids": [0, 1, 2, 3, 4, 5, 6, 8], "val_ids": [7]}]}
    cleaned = clean_folds(train, folds, rules=RULES)
    assert cleaned["folds"][0]["train_ids"] == [0, 8]
    assert cleaned["folds"][0]["val_ids"] == [7]  # validation is never cleaned
    assert cleaned["cleaning"]["dropped"] == [{"fold": 0, "empty": 1, "identical": 1, "contradictory": 2, "val_overlap": 1, "duplicate": 1}]


def test_cleaning_rules_can_be_switched_off():
    train = pairs([("p", "a", "a", 2), ("p", "a", "a", 2)])
    folds = {"n": 1, "seed": 0, "group_by": None, "folds": [{"fold": 0, "train_ids": [0, 1], "val_ids": []}]}
    assert clean_folds(train, folds, rules=[])["folds"][0]["train_ids"] == [0, 1]
    assert clean_folds(train, folds, rules=["duplicate"])["folds"][0]["train_ids"] == [0]


def test_identical_pairs_are_kept_by_default():
    train = pairs([("p", "a", "a", 2), ("q", "b", "c", 0)])
    folds = {"n": 1, "seed": 0, "group_by": None, "folds": [{"fold": 0, "train_ids": [0, 1], "val_ids": []}]}
    assert clean_folds(train, folds)["folds"][0]["train_ids"] == [0, 1]


def test_contradictions_are_judged_on_train_rows_only():
    # Row 1 disagrees with row 0, but row 1 is a validation row: row 0 is a leak, not a contradiction.
    train = pairs([("p", "a", "b", 0), ("p", "a", "b", 1), ("q", "c", "d", 0), ("q", "c", "d", 1)])
    folds = {"n": 1, "seed": 0, "group_by": None, "folds": [{"fold": 0, "train_ids": [0, 2, 3], "val_ids": [1]}]}
    cleaned = clean_folds(train, folds)
    assert cleaned["folds"][0]["train_ids"] == []
    assert cleaned["cleaning"]["dropped"][0] == {"fold": 0, "empty": 0, "contradictory": 2, "val_overlap": 1, "duplicate": 0}
