"""`make gpu-check` without a GPU: it skips cleanly, and the code of each phase stays green on the CPU."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import yaml

from arena_distill.gpu import check, collectives, harness, projection, side_processes, smoke_workflow, tables
from arena_distill.gpu.harness import FAIL, PASS, Result, run_phase, start_logged, wait_or_kill
from arena_distill.modeling import flops
from arena_distill.workflow.config import PRESET, effective_config
from tests.conftest import REPO, job_counts


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_without_a_gpu_the_check_skips_and_exits_0(tmp_path, capsys):
    assert check.main(["--out", str(tmp_path)]) == 0
    assert "no GPU: skipped" in capsys.readouterr().out
    assert "no GPU: skipped" in (tmp_path / "summary.md").read_text()


def test_the_smoke_overlay_validates_on_the_embedded_default(tmp_path):
    config = effective_config([REPO / harness.SMOKE_CONFIG])
    assert {spec["load_in_bits"] for spec in config["teachers"].values()} == {4}
    # The preset's paths: packed teachers with checkpointing, a packed flex student without, flex at prediction.
    assert config["training"]["packing"] and config["training"]["gradient_checkpointing"]
    assert config["student"]["attn_implementation"] == config["predict"]["attn_implementation"] == "flex_attention"
    assert config["student"]["training"] == {"gradient_checkpointing": False, "micro_batch_tokens": 1024}
    student = config["student"]["tiny"]
    assert student["hidden_size"] // student["num_attention_heads"] == 256  # gemma-2-9b's head_dim
    shrunk = tmp_path / "cpu.yaml"
    shrunk.write_text(yaml.safe_dump(smoke_workflow.shrunk(yaml.safe_load((REPO / harness.SMOKE_CONFIG).read_text()))))
    assert effective_config([REPO / harness.SMOKE_CONFIG, shrunk])["teachers"]["llama"]["tiny"]["hidden_size"] == 64


def test_flops_of_the_real_models():
    assert flops.Shape.of(projection.LLAMA3_70B).projection_params == pytest.approx(68.45e9, rel=1e-3)
    assert flops.Shape.of(projection.QWEN2_72B).projection_params == pytest.approx(70.21e9, rel=1e-3)
    gemma = flops.Shape.of(projection.GEMMA2_9B)
    assert gemma.projection_params == pytest.approx(8.32e9, rel=1e-3)
    # Causal attention at 2000 tokens: 2 * 42 layers * 2000 * 4096 FLOPs per token.
    assert gemma.forward_flops(2000) == 2 * gemma.projection_params + 2 * 42 * 2000 * 4096
    assert gemma.lora_train_flops(0) == 2 * gemma.forward_flops(0)


def test_mfu_and_peaks():
    assert flops.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert flops.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert flops.peak_tflops("Tesla T4") == 65.0 and flops.peak_tflops("Some GPU") is None
    # 10,000 tokens in a second at 2 * 8.32e9 FLOPs per token is 1.66e14 FLOP/s: 16.8 % of 989 TFLOP/s.
    assert flops.mfu(10_000 * 2 * 8.32e9, 1.0, 989.0) == pytest.approx(0.16825, rel=1e-3)
    assert flops.mfu(1e13, 1.0, None) is None
    # Each row at its own length: a 1,000- and a 24-token row, not two rows at the longer.
    gemma = flops.Shape.of(projection.GEMMA2_9B)
    assert flops.rows_flops([1000, 24], gemma.forward_flops) == 1000 * gemma.forward_flops(1000) + 24 * gemma.forward_flops(24)


def test_projection_of_the_preset_on_known_numbers():
    preset = effective_config([PRESET])
    assert preset["folds"]["n"] == 5 and preset["teachers"]["llama"]["epochs"] == 1
    assert projection.fold_rows(5, swap=True) == (157_964, 11_495)
    stages = {s.name: s for s in projection.project(preset, projection.Measured(0.4, 0.4, 0.4, 0.4))}
    llama = flops.Shape.of(projection.LLAMA3_70B)
    train = llama.lora_train_flops(600) * 157_964 * 600 / (8 * 989e12 * 0.4) / 3600
    # 1 epoch of 64-row steps is 2,469: validations at 1000, 2000 and the end, plus one
    evaluate = llama.forward_flops(600) * (3 + 1) * 11_495 * 600 / (8 * 989e12 * 0.4) / 3600
    assert stages["train_teacher llama"].hours == pytest.approx(train + evaluate)
    assert 2.0 < train < 2.5  # 4 * 68.45e9 * 94.8M tokens at 40 % of 8 H100s
    kaggle = flops.Shape.of(projection.GEMMA2_9B).forward_flops(650) * 25_000 * 2 * 650
    assert stages["Kaggle test on 1 H100"].hours == pytest.approx(kaggle / (989e12 * 0.4) / 3600)
    assert stages["Kaggle test on 2x T4"].hours == pytest.approx(kaggle / (2 * 65e12 * 0.4) / 3600)
    assert "within the 9 h limit" in stages["Kaggle test on 2x T4"].note
    missing = projection.project(preset, projection.Measured(None, None, None, None))
    assert all(s.hours is None for s in missing)


def test_collectives_phase_runs_on_gloo(tmp_path):
    result = run_phase("collectives", lambda r: collectives.collectives_phase(r, tmp_path / "b"))
    assert result.status == PASS, result.error
    data = result.data
    assert data["backend"] == "gloo" and data["gradient_all_reduce"] == data["steps"] == 4
    assert data["float64_all_reduce"] >= data["steps"] and data["barriers"] > 0
    assert data["resumed_from"] == [4] and data["optimizer_state_devices"] == ["cpu"]
    assert not dist.is_initialized()


def test_collectives_phase_fails_when_train_issues_none(tmp_path):
    """A one-process Parallel issues no collectives: the phase must say so, not pass."""
    result = run_phase("collectives", lambda r: collectives.collectives_phase(r, tmp_path / "b", world=1))
    assert result.status == FAIL and "did not issue the collectives" in result.error


def test_a_collective_on_another_device_than_the_loops_is_a_problem():
    """NCCL serves CUDA tensors only: a CPU tensor reaching it (the step totals once did) must be flagged."""
    counts = {"gradient_all_reduce": 2, "float64_all_reduce": 2, "barriers": 3}
    on_gpu = {"device": torch.device("cuda", 0), "dtype": torch.float32, "numel": 10, "kwargs": {}}
    totals_on_cpu = {**on_gpu, "device": torch.device("cpu"), "dtype": torch.float64, "numel": 2}
    assert collectives.collective_problems([on_gpu, on_gpu], torch.device("cuda", 0), counts, [1.0, 0.9]) == []
    problems = collectives.collective_problems([on_gpu, totals_on_cpu], torch.device("cuda", 0), counts, [1.0, 0.9])
    assert problems == ["collectives got tensors on ['cpu'], not on the loop's device cuda:0"]
    assert "not finite" in collectives.collective_problems([on_gpu], torch.device("cuda", 0), counts, [1.0, math.nan])[0]


def test_summary_records_a_failed_phase_and_the_next_one_runs(tmp_path):
    def broken(result: Result) -> None:
        result.lines.append("partial line")
        raise RuntimeError("boom")

    results = [run_phase("one", broken), run_phase("two", lambda r: r.lines.append("ran"))]
    summary = check.write_summary(tmp_path, ["header"], results).read_text()
    assert "**Overall: FAIL**" in summary and "RuntimeError: boom" in summary and "partial line" in summary
    assert "## two: PASS" in summary and "ran" in summary
    assert json.loads((tmp_path / "results.json").read_text())["phases"][0]["status"] == FAIL


def test_a_kernel_warmup_that_fails_or_overruns_is_reported_and_not_waited_for(tmp_path):
    def started(code: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", code], start_new_session=True)

    assert side_processes.finish_side(started("raise SystemExit(3)"), tmp_path, "warm-gptq", 60) == {"error": "exit 3, see warm-gptq.log"}
    slow = started("import time; time.sleep(60)")
    assert "still running" in side_processes.finish_side(slow, tmp_path, "warm-flex", 0.5)["error"]
    assert slow.poll() is not None  # killed, not left running beside the next phase
    (tmp_path / "warm-gptq.json").write_text(json.dumps({"seconds": 121.0, "kernels": ["MarlinLinear"], "export_seconds": 40.0}))
    done = side_processes.finish_side(started("pass"), tmp_path, "warm-gptq", 60)
    line = tables.warmup_lines({"gptq": done})[0]
    assert "121 s" in line and "MarlinLinear" in line and "exported in 40 s" in line


def test_a_workflow_past_its_budget_fails_with_how_far_it_got(tmp_path):
    (tmp_path / "snakemake.log").write_text("Building DAG of jobs...\n28 of 33 steps (85%) done\n29 of 33 steps (88%) done\n")
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    result = run_phase("workflow", lambda r: smoke_workflow.workflow_phase(r, process, ["python", "-m", "snakemake"], tmp_path, 0.5))
    assert result.status == FAIL and "ran past its 0 s at 29 of 33 steps (88%) done" in result.error
    assert process.poll() is not None and result.data["progress"] == "29 of 33 steps (88%) done"


@pytest.mark.workflow
def test_the_smoke_workflow_at_cpu_sizes_plans_every_rule_and_builds_a_4bit_teacher(tmp_path):
    """The GPU smoke overlay, shrunk to CPU sizes: the whole DAG planned, and the model-building
    rules of a 4-bit teacher (init_model, post_pretrain) run for real. The full run takes about
    2.5 minutes on 2 cores, too long for the suite; the GPU check runs it in full."""
    overlay = smoke_workflow.prepare_workflow(tmp_path / "w", smoke_workflow.SMOKE_PROMPTS, cpu_sizes=True)
    workdir = tmp_path / "w"
    dry = smoke_workflow.snakemake_command(overlay, 2, 1, "-n", *smoke_workflow.SMOKE_TARGETS)
    assert wait_or_kill(start_logged(dry, workdir, tmp_path / "dry.log"), 300) == 0
    counts = job_counts((tmp_path / "dry.log").read_text())
    assert counts == {
        "prepare_data": 3,  # train, extra, test: the calibration is fitted on out-of-fold logits, not on data.calibration
        "init_model": 3,
        "post_pretrain": 3,
        "make_folds": 1,
        "clean_folds": 1,
        "train_teacher": 4,
        "teacher_logits": 4,
        "gather_logits": 4,
        "heuristic_model": 2,
        "heuristic_test": 2,
        "distill_student": 2,
        "average_adapters": 1,
        "merge_student": 1,
        "quantize_student": 1,
        "calibrate_submission": 1,
        "package_model": 1,
        "predict": 1,
        "submission": 1,
        "evaluate": 1,
    }
    target = "results/models/llama/post_pretrain/metrics.json"
    code = wait_or_kill(start_logged(smoke_workflow.snakemake_command(overlay, 2, 1, target), workdir, tmp_path / "run.log"), 600)
    assert code == 0, (tmp_path / "run.log").read_text()[-3000:]
    metrics = json.loads((workdir / target).read_text())
    assert math.isfinite(metrics["train_loss_last"]) and metrics["steps"] > 0
    log = (workdir / "results/logs/post_pretrain/llama.log").read_text()
    assert "fp32 on cpu" in log  # where the GPU check trains in bf16
    assert "in forward passes of packs of at most 768 tokens" in log  # the teachers pack, as the preset's
    assert set(smoke_workflow.rule_timings(workdir)) == {"init_model", "post_pretrain"}
