"""Start-up checks: a missing input file, or what the schema allows but the models cannot use, fails naming the key."""

import json
import subprocess
import sys

import pytest

from arena_distill.errors import ConfigError
from arena_distill.workflow.config import WORKFLOW_DIR, effective_config
from arena_distill.workflow.config_checks import check_config, check_model_sources, check_models

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


def test_a_local_model_path_that_does_not_exist_is_named(tmp_path):
    config = effective_config([PRESET])
    check_model_sources(config)  # the preset's hub ids, loaded from the Hugging Face cache
    for spec in ["/models/llama-3-70b", "./models/llama", "../llama", "models/meta/llama-3"]:
        config["teachers"]["llama"]["model"] = spec
        with pytest.raises(ConfigError, match=rf"no model directory {spec} .*\(config key 'teachers.llama.model'\)"):
            check_model_sources(config)
    config["teachers"]["llama"]["model"] = str(tmp_path)  # an existing directory
    config["student"]["model"] = "~/gemma"
    with pytest.raises(ConfigError, match=r"config key 'student.model'"):
        check_model_sources(config)


def test_the_package_never_downloads_unless_asked():
    probe = "import arena_distill, huggingface_hub.constants as c; print(c.HF_HUB_OFFLINE)"
    assert (
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env={"PATH": ""}).stdout.strip() == "True"
    )
    assert (
        subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env={"PATH": "", "HF_HUB_OFFLINE": "0"}
        ).stdout.strip()
        == "False"
    )


def test_shrink_is_refused_on_top_of_a_calibration():
    config = effective_config()
    config["predict"].update(shrink=True, calibration="symmetric")
    with pytest.raises(ConfigError, match="shrink replaces the calibration") as error:
        check_config(config, WORKFLOW_DIR)
    assert error.value.key == "predict.shrink"
    config["predict"]["calibration"] = "none"
    check_config(config, WORKFLOW_DIR)


def test_the_features_calibration_is_refused_on_out_of_fold_logits():
    config = effective_config()
    config["predict"].update(calibration="features", calibrate_on="oof")
    with pytest.raises(ConfigError, match="fitted on labelled rows with their texts") as error:
        check_config(config, WORKFLOW_DIR)
    assert error.value.key == "predict.calibrate_on"
    config["predict"]["calibrate_on"] = "calibration_data"
    check_config(config, WORKFLOW_DIR)


def test_sdpa_for_a_soft_capped_model_is_refused_naming_the_key():
    for overlays in ([], [PRESET]):  # the tiny Gemma-2 and gemma-2-9b both cap at 50
        config = effective_config(overlays)
        config["student"]["attn_implementation"] = "sdpa"
        with pytest.raises(ConfigError, match=r"sdpa cannot soft-cap .* at 50\).*\(config key 'student.attn_implementation'\)"):
            check_models(config, WORKFLOW_DIR)
    config = effective_config([PRESET])
    config["predict"]["attn_implementation"] = "sdpa"
    with pytest.raises(ConfigError, match=r"config key 'predict.attn_implementation'"):
        check_models(config, WORKFLOW_DIR)
    config["predict"]["attn_implementation"] = "flex_attention"
    config["teachers"]["llama"]["attn_implementation"] = "sdpa"  # Llama-3 does not soft-cap
    check_models(config, WORKFLOW_DIR)


def test_flex_attention_with_attention_dropout_is_refused(tmp_path):
    config = effective_config()
    model_dir = tmp_path / "llama-with-dropout"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(
        json.dumps(
            {
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_attention_heads": 4,
                "max_position_embeddings": 512,
                "attention_dropout": 0.1,
            }
        )
    )
    config["teachers"]["llama"] = {**config["teachers"]["llama"], "model": str(model_dir), "attn_implementation": "flex_attention"}
    with pytest.raises(ConfigError, match=r"no attention dropout .*0.1.*\(config key 'teachers.llama.attn_implementation'\)"):
        check_models(config, tmp_path)
    config["teachers"]["llama"]["attn_implementation"] = "sdpa"
    check_models(config, tmp_path)
