"""Test-time scoring: swap TTA, submission checks, the command line."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from arena_distill import LABELS
from arena_distill.cli import model_settings
from arena_distill.data.pairs import swap_pairs
from arena_distill.data.tables import prepare_test
from arena_distill.data.text import TextConfig
from arena_distill.errors import DataError, NumericalError
from arena_distill.modeling.models import build_tiny_model, resolve_dtype, save_model
from arena_distill.serving.prediction import load_classifier, pair_probs
from arena_distill.serving.submission import check_submission, probs_frame
from tests.conftest import SAMPLE, predict_cli

SIZES = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 64}


@pytest.fixture(scope="module")
def model_dir(tokenizer, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "llama"
    save_model(build_tiny_model("llama", tokenizer, SIZES, seed=3), tokenizer, path)
    return path


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "pairs.csv"
    pd.read_csv(SAMPLE / "test.csv", dtype=str, keep_default_na=False).head(12).to_csv(path, index=False)
    return path


def test_a_swapped_pair_gets_the_mirrored_probabilities(model_dir, pairs):
    model, tokenizer = load_classifier(model_dir)
    rows = prepare_test(pairs)
    text = TextConfig(max_length=96, prompt_tokens=32)
    original = pair_probs(model, tokenizer, rows, text, max_lengths=[96, 128])
    mirrored = pair_probs(model, tokenizer, swap_pairs(rows), text, max_lengths=[96, 128])
    assert np.allclose(mirrored, original[:, [1, 0, 2]], atol=1e-6)
    assert np.allclose(original.sum(axis=1), 1)
    plain = pair_probs(model, tokenizer, rows, text, max_lengths=[96], tta=False)
    assert not np.allclose(plain, pair_probs(model, tokenizer, rows, text, max_lengths=[96]), atol=1e-4)  # TTA changes something


def test_submission_checks_name_the_bad_row():
    probs = np.full((3, 3), 1 / 3)
    check_submission(probs_frame([5, 6, 7], probs), [7, 6, 5], "sub.csv")
    with pytest.raises(DataError, match="ids differ"):
        check_submission(probs_frame([5, 6], probs[:2]), [5, 6, 7], "sub.csv")
    probs[1] = [0.5, 0.6, -0.1]
    with pytest.raises(DataError, match=r"not a distribution \(file sub.csv, row id 6"):
        check_submission(probs_frame([5, 6, 7], probs), [5, 6, 7], "sub.csv")


def test_the_command_line_scores_a_file(model_dir, pairs, tmp_path):
    out = tmp_path / "preds.parquet"
    predict_cli(model_dir, pairs, out, "--max-length", "96")
    predictions = pd.read_parquet(out)
    assert list(predictions.columns) == ["id", *LABELS] and len(predictions) == 12
    assert np.allclose(predictions[list(LABELS)].sum(axis=1), 1)


def test_the_command_line_uses_the_models_saved_settings(model_dir, tmp_path):
    text, settings = model_settings(str(model_dir))
    assert settings["max_lengths"] == [2000] and settings["tta"] is True  # no inference.json: the original's
    saved = tmp_path / "with_settings"
    shutil.copytree(model_dir, saved)
    (saved / "inference.json").write_text(json.dumps({"text": {"prompt_tokens": 64}, "predict": {"max_lengths": [300], "tta": False}}))
    text, settings = model_settings(str(saved))
    assert text["prompt_tokens"] == 64 and text["prompt_words"] == 256
    assert settings["max_lengths"] == [300] and settings["tta"] is False


def test_the_command_line_names_a_bad_row(model_dir, pairs, tmp_path):
    bad = pd.read_csv(pairs, dtype=str, keep_default_na=False)
    bad.loc[4, "id"] = "not-an-id"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    result = predict_cli(model_dir, tmp_path / "bad.csv", tmp_path / "out.csv", check=False)
    assert result.returncode == 2
    assert "error:" in result.stderr and "bad.csv" in result.stderr and "'id'" in result.stderr
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize(
    ("model", "output", "message"),
    [
        ("no/such/model", "out.csv", "is not a model directory"),
        ("MODEL", "out.json", "unsupported output format '.json'"),
    ],
)
def test_the_command_line_refuses_before_scoring(model_dir, pairs, tmp_path, model, output, message):
    """A missing model directory is never looked up on a hub; a bad output suffix fails at once."""
    args = [
        sys.executable,
        "-m",
        "arena_distill",
        "predict",
        "--model",
        str(model_dir) if model == "MODEL" else model,
        "--input",
        str(pairs),
        "--output",
        str(tmp_path / output),
    ]
    result = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "0"})
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / output).exists()


def test_bf16_scoring_stays_close_to_fp32(model_dir, pairs, tmp_path):
    rows = prepare_test(pairs)
    text = TextConfig(max_length=96, prompt_tokens=32)
    full, tokenizer = load_classifier(model_dir, dtype="float32")
    save_model(full, tokenizer, tmp_path / "classifier")  # with its head, as the workflow exports it
    half, _ = load_classifier(tmp_path / "classifier", dtype="bfloat16")
    assert full.dtype == torch.float32 and half.dtype == torch.bfloat16
    reference = pair_probs(full, tokenizer, rows, text, max_lengths=[96])
    rounded = pair_probs(half, tokenizer, rows, text, max_lengths=[96])
    assert 0 < np.abs(rounded - reference).max() < 0.02


def test_auto_precision_is_bf16_where_the_gpu_has_it_and_fp16_on_a_t4(monkeypatch):
    assert resolve_dtype("auto") == torch.float32  # this CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert resolve_dtype("auto") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert resolve_dtype("auto") == torch.float16
    assert resolve_dtype("float32") == torch.float32


def test_non_finite_logits_stop_the_prediction_naming_the_pair(model_dir, pairs):
    model, tokenizer = load_classifier(model_dir)
    with torch.no_grad():
        model.score.weight[1, 0] = float("nan")
    rows = prepare_test(pairs)
    with pytest.raises(NumericalError, match=rf"12 of 12 pairs got non-finite logits .* \(row id {rows['id'].iloc[0]}\)"):
        pair_probs(model, tokenizer, rows, TextConfig(max_length=96, prompt_tokens=32), max_lengths=[96])


def test_the_console_script_helps_without_loading_the_model_libraries():
    """`arena-distill --help` (installed by `make setup`) prints an example and loads no
    torch, transformers or GPTQModel: those take seconds and print banners."""
    script = shutil.which("arena-distill", path=os.path.dirname(sys.executable))
    assert script, "make setup installs the arena-distill console script into the venv"
    shown = subprocess.run([script, "predict", "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and shown.stderr == ""
    assert "arena-distill predict --model results/model --input" in shown.stdout
    probe = (
        "import sys; from arena_distill.cli import main\n"
        "try: main(['--help'])\nexcept SystemExit: pass\n"
        "print(sorted(m for m in ('torch', 'transformers', 'gptqmodel', 'pandas') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert loaded.stdout.strip().splitlines()[-1] == "[]", loaded.stdout + loaded.stderr
