"""The Kaggle bundle's parts: worker devices and shares, the T4's GPTQ kernel, the wheels, the time budget."""

from __future__ import annotations

import pytest

from arena_distill.errors import ConfigError, DeviceError
from arena_distill.export.kaggle_bundle import KAGGLE_LIMIT_HOURS, competition_budget, time_budget
from arena_distill.export.kaggle_wheels import IMAGE_LACKS, find_wheels, required_wheels
from arena_distill.gpu.projection import GEMMA2_9B
from arena_distill.modeling.flops import Shape
from arena_distill.serving.prediction import TURING_BACKEND, gptq_backend_for
from arena_distill.serving.prediction_workers import balanced_shares, worker_devices
from tests.conftest import REPO


def test_one_worker_per_visible_gpu_and_a_named_error_without_one():
    assert worker_devices("cuda", None, 2) == ["cuda:0", "cuda:1"]
    assert worker_devices("auto", None, 2) == ["cuda:0", "cuda:1"] and worker_devices("auto", None, 0) == ["cpu"]
    assert worker_devices("cpu", 2, 2) == ["cpu", "cpu"] and worker_devices("cuda", 1, 2) == ["cuda:0"]
    with pytest.raises(DeviceError, match="no GPU is visible.*--device cpu"):
        worker_devices("cuda", None, 0)
    with pytest.raises(DeviceError, match="more processes than the 2 visible GPUs"):
        worker_devices("cuda", 3, 2)
    with pytest.raises(ValueError, match="at least 1"):
        worker_devices("cpu", 0, 0)


def test_shares_cover_every_row_once_and_balance_tokens():
    lengths = [900, 30, 40, 800, 35, 700, 50, 60, 45, 20]
    shares = balanced_shares(lengths, 2)
    assert sorted(i for share in shares for i in share) == list(range(len(lengths)))
    assert all(list(share) == sorted(share) for share in shares)
    totals = [sum(lengths[i] for i in share) for share in shares]
    # longest first: 900 | 800, then 700 joins the lighter 800, and the short rows fill the 900 share
    assert totals == [1180, 1500] and shares[1].tolist() == [3, 5]
    assert sorted(totals) != sorted([sum(lengths[:5]), sum(lengths[5:])]), "not the file's halves (2505 against 875)"
    assert balanced_shares(lengths, 1)[0].tolist() == list(range(len(lengths)))


def test_a_t4_loads_gptq_with_the_triton_kernel_and_newer_gpus_keep_auto():
    assert gptq_backend_for("auto", "cuda:1", capability=(7, 5)) == TURING_BACKEND == "gptq_triton"
    assert gptq_backend_for("auto", "cuda:0", capability=(9, 0)) == "auto"
    assert gptq_backend_for("auto", "cuda:0", capability=(8, 0)) == "auto"
    assert gptq_backend_for("gptq_torch", "cuda:0", capability=(7, 5)) == "gptq_torch", "a named kernel is kept"
    assert gptq_backend_for("auto", "cpu") == "auto"


def test_the_bundle_takes_each_pinned_wheel_and_names_the_missing_ones(tmp_path):
    for name in ("optimum-2.3.0-py3-none-any.whl", "device_smi-0.5.7-py3-none-any.whl", "optimum-2.2.0-py3-none-any.whl"):
        (tmp_path / name).touch()
    found = find_wheels(tmp_path, ["optimum==2.3.0", "Device-SMI==0.5.7"])
    assert [w.name for w in found] == ["optimum-2.3.0-py3-none-any.whl", "device_smi-0.5.7-py3-none-any.whl"]
    with pytest.raises(ConfigError, match=r"lacks \['gptqmodel==7.6.0'\].*make kaggle-wheels.*kaggle.wheels"):
        find_wheels(tmp_path, ["optimum==2.3.0", "gptqmodel==7.6.0"])
    assert required_wheels({"wheels": None}, "gptq") == IMAGE_LACKS["gptq"]
    assert "gptqmodel==7.6.0" in IMAGE_LACKS["gptq"] and required_wheels({"wheels": []}, "gptq") == ()


def test_the_gptq_wheels_are_the_lock_versions():
    lock = dict(
        line.split("==") for line in (REPO / "requirements.lock").read_text().splitlines() if "==" in line and not line.startswith("#")
    )
    lock = {name.lower(): version.split()[0] for name, version in lock.items()}
    for requirement in (*IMAGE_LACKS["gptq"], *IMAGE_LACKS["bnb"]):
        name, version = requirement.split("==")
        if name.lower() in lock:
            assert lock[name.lower()] == version, requirement


def test_the_time_budget_of_the_real_student_fits_kaggles_nine_hours_with_tta():
    """Gemma-2-9B's decoder, 25k pairs scored twice at 700 tokens on two T4s at 25 % of 65 TFLOP/s."""
    shape = Shape.of(GEMMA2_9B)
    budget = time_budget(shape, tokens_per_pair=700, views=2)
    expected = 25_000 * 2 * 700 * shape.forward_flops(700) / (2 * 65e12 * 0.25) / 3600
    assert budget.hours == pytest.approx(expected) and 3 < budget.hours < KAGGLE_LIMIT_HOURS
    assert "fits in Kaggle's 9 h" in budget.line()
    assert "does NOT fit" in time_budget(shape, tokens_per_pair=2000, views=4).line()
    tiny = Shape.of({"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128})
    assert time_budget(tiny, 150, 2).line().startswith("25,000 pairs x 2 scorings x 150 tokens on 2xT4: ~0.047 s at 25%")


def test_the_competition_budget_counts_a_scoring_per_length_and_order():
    """Tokens per pair measured on the rows at each test length (capped there), averaged; TTA doubles the scorings."""
    import pandas as pd

    rows = pd.DataFrame({"prompt": [["word " * 40]] * 4, "response_a": [["a " * 300]] * 4, "response_b": [["b " * 10]] * 4})
    shape = Shape.of(GEMMA2_9B)
    text = {"prompt_words": 256, "response_words": 700, "prompt_tokens": 256}
    both = competition_budget(shape, rows, text, {"max_lengths": [100, 2000], "tta": True})
    long = competition_budget(shape, rows, text, {"max_lengths": [2000], "tta": False})
    assert both.views == 4 and long.views == 1 and long.tokens_per_pair > 100
    assert both.tokens_per_pair == pytest.approx((100 + long.tokens_per_pair) / 2)
