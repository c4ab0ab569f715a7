"""The capacity plan: real architectures on the meta device, no weights, no network."""

from __future__ import annotations

import pytest
import yaml

from arena_distill.cli import main
from arena_distill.errors import ConfigError
from arena_distill.workflow.capacity import plan
from arena_distill.workflow.config import effective_config
from tests.conftest import REPO

PRESET = str(REPO / "config" / "presets" / "blackpearl.yaml")
PROFILE = str(REPO / "profiles" / "slurm")
BUDGET = str(REPO / "config" / "presets" / "budget.yaml")


def overlay(tmp_path, settings: dict) -> str:
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(settings))
    return str(path)


def by_rule(estimates) -> dict:
    return {(e.rule, e.model.split(":")[0]): e for e in estimates}


def test_the_preset_fits_every_rule_within_the_audited_bands():
    estimates = by_rule(plan(effective_config([PRESET]), PROFILE, 80))
    assert all(e.verdict == "fits" for e in estimates.values())
    bands = {  # GiB per GPU; the GPU audit's hand estimates are inside each band
        ("train_teacher", "llama"): (45, 75),
        ("train_teacher", "qwen"): (45, 75),
        ("teacher_logits", "llama"): (38, 58),
        ("distill_student", "student"): (45, 72),  # without checkpointing (the audit: ~54; ~25 with it)
        ("quantize_student", "student"): (17, 27),
        ("predict", "student"): (11, 25),
    }
    for key, (low, high) in bands.items():
        assert low < estimates[key].total_gib < high, (key, estimates[key].parts)
    llama = estimates[("train_teacher", "llama")]
    assert (llama.gpus, round(llama.params / 1e9, 1), round(llama.trainable / 1e6)) == (8, 69.5, 828)
    assert estimates[("teacher_logits", "llama")].gpus == 1
    assert estimates[("merge_student", "student")].gpus == 0  # CPU: host RAM against the rule's mem_mb
    assert ("score_holdout", "student") not in estimates  # holdout 0: no job scores models


@pytest.mark.parametrize("gpu_memory_gib", [32, 80])
def test_the_budget_preset_fits_32_and_80_gb_gpus(gpu_memory_gib):
    """The seed team's run: an 8B QLoRA teacher and the 16-bit 9B student, on the profile's nodes."""
    estimates = by_rule(plan(effective_config([BUDGET]), PROFILE, gpu_memory_gib))
    assert all(e.verdict == "fits" for e in estimates.values()), {k: (e.total_gib, e.verdict) for k, e in estimates.items()}
    assert {model for _, model in estimates} == {"llama", "student"}  # Qwen skipped
    assert estimates[("distill_student", "student")].total_gib < 0.9 * 32
    assert round(estimates[("train_teacher", "llama")].params / 1e9, 1) == 7.5


def test_teachers_without_gradient_checkpointing_do_not_fit(tmp_path, capsys):
    no_checkpointing = overlay(tmp_path, {"training": {"gradient_checkpointing": False}})
    estimates = plan(effective_config([PRESET, no_checkpointing]), PROFILE, 80)
    out_of_memory = {e.model.split(":")[0] for e in estimates if e.rule == "train_teacher" and e.verdict == "OOM"}
    assert out_of_memory == {"llama", "qwen"}
    assert main(["plan", "--configfile", PRESET, no_checkpointing, "--profile", PROFILE]) == 1
    assert "OOM: train_teacher (llama" in capsys.readouterr().err


def test_a_model_with_no_known_architecture_names_its_config_key(tmp_path):
    unknown = overlay(tmp_path, {"teachers": {"llama": {"model": "nobody/no-such-model-70B"}}})
    with pytest.raises(ConfigError) as error:
        plan(effective_config([PRESET, unknown]), PROFILE, 80)
    assert error.value.key == "teachers.llama.model"


def test_the_embedded_tiny_default_plans_and_fits(capsys):
    assert main(["plan", "--profile", PROFILE]) == 0
    printed = capsys.readouterr().out
    assert "| distill_student | student: tiny:gemma2 | 8 |" in printed
    assert "OOM" not in printed and "| score_holdout | student: tiny:gemma2 |" in printed  # the default's holdout is scored


def test_the_docs_show_the_table_the_preset_prints(capsys):
    assert main(["plan", "--configfile", PRESET, "--profile", PROFILE]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    page = (REPO / "docs" / "cluster.md").read_text().split("## Capacity plan", 1)[1].split("\n## ", 1)[0]
    assert printed == [line for line in page.splitlines() if line.startswith("|")]


def test_a_fold_ensemble_holds_every_fold_model_when_it_predicts(tmp_path):
    ensemble = overlay(tmp_path, {"average": {"method": "ensemble"}})
    single = by_rule(plan(effective_config([PRESET]), PROFILE, 80))[("predict", "student")]
    held = by_rule(plan(effective_config([PRESET, ensemble]), PROFILE, 80))[("predict", "student")]
    weights = {name: gib for name, gib in held.parts if name.startswith("weights")}
    assert list(weights) == [f"weights (5 x {single.dtype})"] and held.total_gib > single.total_gib
    assert weights[f"weights (5 x {single.dtype})"] == pytest.approx(5 * dict(single.parts)[f"weights ({single.dtype})"])
