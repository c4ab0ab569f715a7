"""`arena-distill download`: which models a run fetches, and a failure named, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

from arena_distill.workflow.config import PRESET, effective_config
from arena_distill.workflow.download import hub_models


def test_the_preset_fetches_its_three_hub_models_and_the_default_none():
    assert hub_models(effective_config([PRESET])) == {
        "teachers.llama.model": "meta-llama/Meta-Llama-3-70B-Instruct",
        "teachers.qwen.model": "Qwen/Qwen2-72B-Instruct",
        "student.model": "google/gemma-2-9b-it",
    }
    assert hub_models(effective_config([])) == {}


def test_teachers_whose_logits_are_given_and_local_models_are_not_fetched(tmp_path):
    config = effective_config([PRESET])
    config["distill"]["teacher_logits"] = {"llama": "logits.parquet"}
    assert hub_models(config) == {"student.model": "google/gemma-2-9b-it"}
    config["student"]["model"] = str(tmp_path)
    assert hub_models(config) == {}


def test_a_failed_fetch_is_a_named_error_with_exit_2(tmp_path):
    """The command asks for the network although the package runs offline (HF_HUB_OFFLINE=1):
    here there is none, or no such repository, and it says so."""
    overlay = tmp_path / "model.yaml"
    overlay.write_text('student: {model: "arena-distill/no-such-model"}\n')
    result = subprocess.run(
        [sys.executable, "-m", "arena_distill", "download", "--configfile", str(overlay)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HOME": str(tmp_path / "hf")},
    )
    assert result.returncode == 2, result.stderr
    assert "error: DownloadError:" in result.stderr and "HF_TOKEN" in result.stderr
    assert "outgoing traffic has been disabled" not in result.stderr  # it did ask the network
    assert "student.model: arena-distill/no-such-model" in result.stdout
