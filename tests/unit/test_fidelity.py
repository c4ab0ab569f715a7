"""The preset's effective settings are the original's, as the fidelity table of docs/fidelity.md states.

The effective config is what Snakemake runs: the embedded default with the preset merged on
top (recursively, nulls removing entries), validated with the schema's defaults filled in.
Every `key = value` in the table's "preset setting" column is asserted against it, so the
table cannot drift from the config and a default cannot leak into the preset unnoticed.
"""

from __future__ import annotations

import math
import re

import pytest
import yaml

from arena_distill.workflow.config import effective_config
from tests.conftest import REPO

SETTING = re.compile(r"`([\w.*]+) = ([^`]+)`")


BUDGET_SECTION = "## The seed team's budget run"


def effective_preset(name: str = "blackpearl") -> dict:
    return effective_config([REPO / "config" / "presets" / f"{name}.yaml"])


def fidelity_rows(section: str = "original") -> list[list[str]]:
    """The table rows of the original's section (`original`) or of the budget run's."""
    original, budget = (REPO / "docs" / "fidelity.md").read_text().split(BUDGET_SECTION)
    text, cells = (original, 5) if section == "original" else (budget, 4)
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in text.splitlines() if line.startswith("| ")]
    return [row for row in rows[1:] if len(row) == cells]


def lookup(config: dict, key: str) -> list:
    """The values at a dotted key; `*` fans out over a mapping's entries."""
    values = [config]
    for part in key.split("."):
        values = [v for value in values for v in (value.values() if part == "*" else [value[part]])]
    return values


def settings(section: str = "original") -> list[tuple[str, object]]:
    column = 3 if section == "original" else 2
    return [(key, yaml.safe_load(value)) for row in fidelity_rows(section) for key, value in SETTING.findall(row[column])]


def test_the_table_covers_every_ranked_deviation_of_the_audit():
    ranks = [row[0] for row in fidelity_rows()]
    assert [rank for rank in ranks if rank != "–"] == [str(i) for i in range(1, 10)]
    assert len(settings()) >= 40


@pytest.mark.parametrize("key,expected", settings(), ids=[key for key, _ in settings()])
def test_the_preset_runs_the_original_setting(key, expected):
    values = lookup(effective_preset(), key)
    assert values and all(value == expected for value in values), f"{key}: {values} != {expected}"


@pytest.mark.parametrize("key,expected", settings("budget"), ids=[key for key, _ in settings("budget")])
def test_the_budget_preset_runs_what_its_table_says(key, expected):
    values = lookup(effective_preset("budget"), key)
    assert values and all(value == expected for value in values), f"{key}: {values} != {expected}"


def test_the_budget_table_covers_every_step_of_the_document():
    steps = [row[0] for row in fidelity_rows("budget")]
    assert {"models", "1", "2", "2.5", "3", "4", "4.5", "5", "6", "7", "8", "9–10"} <= set(steps)
    assert len(settings("budget")) >= 30
    assert set(effective_preset("budget")["teachers"]) == {"llama"}  # the one trained teacher


def test_validation_costs_at_most_a_tenth_of_the_training_in_the_preset():
    """At the competition's sizes: 57,477 rows in 5 folds plus the 33k extra set, both orders."""
    from arena_distill.training.stages import train_config

    config = effective_preset()
    val_rows = 57_477 / 5
    train_rows = 2 * (57_477 - val_rows + 33_000)
    specs = [*config["teachers"].values(), config["student"]]
    for spec in specs:
        settings = train_config(config["training"], spec)
        steps = math.ceil(train_rows / settings.batch_size)
        assert settings.validation_share(steps, train_rows, val_rows) <= 0.10
    original = train_config({**config["training"], "eval_every": 100}, config["student"])
    assert original.validation_share(math.ceil(train_rows / 64), train_rows, val_rows) > 0.5


@pytest.mark.parametrize(("page", "section"), [("cluster.md", "Findings of the GPU audit"), ("troubleshooting.md", "# What can go wrong")])
def test_every_test_a_docs_table_names_exists(page, section):
    text = (REPO / "docs" / page).read_text().split(section, 1)[1].split("\n#", 1)[0]
    named = set(re.findall(r"(test_\w+)`", text))
    defined = {match for path in (REPO / "tests").rglob("test_*.py") for match in re.findall(r"^def (test_\w+)", path.read_text(), re.M)}
    assert named and named <= defined, named - defined
