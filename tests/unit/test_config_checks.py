"""Start-up checks: a missing input file, or what the schema allows but the models cannot use, fails naming the key."""

import pytest

from arena_distill.config_checks import check_config, check_models
from arena_distill.errors import ConfigError
from arena_distill.workflow import WORKFLOW_DIR, effective_config

PRESET = WORKFLOW_DIR / "config" / "presets" / "blackpearl.yaml"


def test_the_default_and_the_preset_pass(monkeypatch):
    monkeypatch.chdir(WORKFLOW_DIR)
    check_config(effective_config(), WORKFLOW_DIR)
    check_models(effective_config([PRESET]), WORKFLOW_DIR)  # dims from the bundled model configs; no competition files here


@pytest.mark.parametrize("key", ["train", "test", "calibration"])
def test_a_configured_file_that_does_not_exist_is_named(monkeypatch, key):
    monkeypatch.chdir(WORKFLOW_DIR)
    config = effective_config()
    config["data"][key] = "data/sample/typo.parquet"
    with pytest.raises(ConfigError, match=rf"no such file: data/sample/typo.parquet \(config key 'data.{key}'\)"):
        check_config(config, WORKFLOW_DIR)


def test_a_gptq_group_must_divide_the_real_students_widths():
    config = effective_config([PRESET])
    config["quantize"]["group_size"] = 448  # divides gemma-2-9b's 3584 and 14336, not its 16 x 256 attention width
    with pytest.raises(ConfigError, match=r"does not divide the student's heads × head_dim 4096 \(config key 'quantize.group_size'\)"):
        check_models(config, WORKFLOW_DIR)
    config["quantize"]["method"] = "bnb"  # no groups: nothing to check
    check_models(config, WORKFLOW_DIR)


def test_training_lengths_must_fit_every_model():
    config = effective_config()
    config["teachers"]["qwen"]["tiny"]["max_position_embeddings"] = 128
    with pytest.raises(ConfigError, match=r"256 tokens exceed the 128 positions of model 'qwen' \(config key 'text.train_max_length'\)"):
        check_models(config, WORKFLOW_DIR)


def test_a_model_no_config_describes_is_not_checked(tmp_path):
    config = effective_config()
    config["student"] = {"model": "some-org/unknown-model"}
    config["quantize"]["group_size"] = 7
    check_models(config, tmp_path)
