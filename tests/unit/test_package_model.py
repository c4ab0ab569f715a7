"""The served model directory: exported weights (linked, not copied) with the fitted calibration."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from arena_distill.data import answer_features, text
from arena_distill.export.package_model import FEATURES_MODULE, FORMAT_MODULE, package_model
from arena_distill.scoring.calibration import PairScaling
from arena_distill.serving.prediction import saved_calibration

FIT = {"method": "symmetric", "ab_scale": 0.8, "tie_scale": 1.1, "tie_bias": 0.9, "rows": 60, "log_loss_before": 1.2}


def exported(tmp_path):
    model = tmp_path / "quantized"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "config.json").write_text("{}")
    (model / "inference.json").write_text(json.dumps({"text": {"prompt_words": 256}}))
    (model / ".snakemake_timestamp").touch()
    return model


def test_the_calibration_travels_with_the_weights(tmp_path):
    model = exported(tmp_path)
    package_model(model, tmp_path / "model", FIT, {"tta": True})
    inference = json.loads((tmp_path / "model/inference.json").read_text())
    assert inference == {"text": {"prompt_words": 256}, "predict": {"tta": True}, "calibration": FIT}
    assert saved_calibration(tmp_path / "model") == PairScaling("symmetric", 0.8, 1.1, 0.9)
    assert (tmp_path / "model/model.safetensors").stat().st_ino == (model / "model.safetensors").stat().st_ino
    assert json.loads((model / "inference.json").read_text()) == {"text": {"prompt_words": 256}}, "the export is left as it was"
    assert saved_calibration(model) is None
    # Snakemake's own timestamp is not shared: touching the package's would age the calibration
    assert not (tmp_path / "model/.snakemake_timestamp").exists()


def test_an_uncalibrated_run_packages_no_calibration(tmp_path):
    model = exported(tmp_path)
    for fit in (None, {"method": "none"}):
        package_model(model, tmp_path / "model", fit, {"tta": True})
        assert json.loads((tmp_path / "model/inference.json").read_text())["calibration"] is None
        assert saved_calibration(tmp_path / "model") is None


def test_the_input_format_ships_with_the_model_and_needs_only_the_standard_library(tmp_path):
    """`pair_format.py` and `answer_features.py` are the project's modules verbatim, importable
    by a bare interpreter (-S: no site-packages, so no transformers, numpy or arena_distill)."""
    model = exported(tmp_path)
    package_model(model, tmp_path / "model", None, {"tta": True})
    assert (tmp_path / "model" / FORMAT_MODULE).read_text() == Path(text.__file__).read_text()
    assert (tmp_path / "model" / FEATURES_MODULE).read_text() == Path(answer_features.__file__).read_text()
    probe = (
        f"import sys; sys.path.insert(0, {str(tmp_path / 'model')!r}); import pair_format, answer_features; "
        "print(pair_format.format_pair(['Hi?'], ['A.'], ['B.']) == pair_format.HEADER + 'Hi?' + pair_format.BEFORE_A + 'A.' "
        "+ pair_format.BEFORE_B + 'B.' + pair_format.FOOTER, len(answer_features.features_of_pair('Hi?', 'A.', 'Bee.')))"
    )
    result = subprocess.run([sys.executable, "-I", "-S", "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.split() == ["True", str(2 * len(answer_features.FEATURES) + 1)], result.stderr
