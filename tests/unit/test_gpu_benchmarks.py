"""The benchmarks of `make gpu-check` at tiny sizes on the CPU: each comparison's code runs here,
so it cannot rot between the GPU sessions that run it for real; and the plan fits the session."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
import torch

from arena_distill.gpu import (
    bench_session,
    benchmarks_phase,
    check,
    gradient_check,
    harness,
    projection,
    speed_comparisons,
    tables,
    workload,
)
from arena_distill.gpu.bench_session import empty_bench
from arena_distill.gpu.benchmarks_phase import DeadlinePassed
from arena_distill.gpu.workload import PRESET_LORA, random_model
from arena_distill.modeling.models import add_lora
from arena_distill.workflow.config import PRESET, effective_config

CPU = torch.device("cpu")
SIZES = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 256}
"""64 wide: the smallest width bitsandbytes' CPU NF4 kernel takes."""
TINY_GEMMA2 = {**SIZES, "num_hidden_layers": 1, "head_dim": 32, "attn_logit_softcapping": 50.0, "query_pre_attn_scalar": 32}
TINY_LLAMA = {**SIZES, "num_hidden_layers": 2}


def collect() -> tuple[list[str], Callable[[str, dict], None]]:
    """The report rows a benchmark emits, and the `emit` that gathers them."""
    lines: list[str] = []
    return lines, lambda kind, entry: lines.append(tables.bench_row(kind, entry))


def test_the_plan_fits_a_gpu_session_and_makes_every_comparison(capsys):
    assert check.planned_seconds() <= check.BUDGET_SECONDS <= check.RUN_LIMIT == 600
    schedule = {phase: (start, end) for phase, start, end in check.schedule()}
    assert set(schedule) == set(harness.PHASE_BUDGETS)
    # The environment and collectives run beside the workflow, the benchmarks after both.
    assert schedule["benchmarks"][0] == max(schedule["workflow"][1], schedule["collectives"][1])
    assert [m.comparison for m in harness.MEASUREMENTS] == list("abcde")  # in order of priority
    assert sum(m.seconds for m in harness.MEASUREMENTS) <= harness.PHASE_BUDGETS["benchmarks"]
    assert set(benchmarks_phase.RUNNERS) == {m.key for m in harness.MEASUREMENTS}
    what = {m.comparison: m.what for m in harness.MEASUREMENTS}
    assert all(word in what["a"] for word in ("eager", "flex_attention", "1,024", "2,000"))
    assert all(word in what["b"] for word in ("padded", "packed flex 2,048", "packed eager 2,048", "4,096"))
    assert "fp32 and bf16" in what["c"] and "kbit_upcast" in what["d"] and "GPTQ" in what["e"] and "2,000" in what["e"]
    assert check.main(["--plan"]) == 0
    printed = capsys.readouterr().out
    assert all(f"| {m.comparison} | {m.key} |" in printed for m in harness.MEASUREMENTS)
    assert "| workflow | 0 | 300 | 300 |" in printed and "| projection | 575 | 580 | 5 |" in printed


def test_the_benchmarks_follow_the_preset():
    settings = workload.preset_settings()
    assert settings == {"train_length": 1024, "test_length": 2000, "teacher_tokens": 4096, "student_tokens": 2048, "max_tokens": 32768}
    cases = {case.name: case for case in speed_comparisons.student_cases()}
    assert cases["packed flex, 2,048 tokens (the preset)"].settings == {"packing": True, "micro_batch_tokens": 2048}
    assert cases["padded eager, micro-batches of 2 (today)"].settings == {"micro_batch_size": 2}
    assert [case.may_not_fit for case in cases.values()] == [False, False, True, True]


def test_rows_take_the_lengths_of_the_real_arena_votes():
    lengths = workload.arena_lengths(1024)
    assert len(lengths) == 1000 and lengths.max() == 1024 and 580 < lengths.mean() < 630  # mean 606, 22 % at the cap
    rows = workload.real_rows(50, 2000, vocab=100, seed=0, pad_id=1)
    assert all(2 <= token < 100 for row in rows for token in row)  # never the pad id: the head reads each row's last token
    assert {len(row) for row in rows} <= set(workload.arena_lengths(2000))
    # The lengths do not depend on the vocabulary: the flex warm-up's narrow model meets the benchmark's shapes.
    assert [len(row) for row in rows] == [len(row) for row in workload.real_rows(50, 2000, vocab=7, seed=0)]


def test_student_prediction_scores_the_same_rows_with_eager_and_flex():
    bench = empty_bench("cpu", None)
    lines, emit = collect()
    model = random_model(TINY_GEMMA2, "gemma2", CPU, torch.float32, "eager")
    # Flex uncompiled: inductor's CPU compile takes ~30 s cold, and test_packing covers the compiled forward.
    with torch.compiler.set_stance("force_eager"):
        speed_comparisons.student_prediction(bench, model, None, emit, lambda: 1e9, (64, 96), rows=8)
    entries = bench["student_predict"]
    assert [(e["attn"], e["max_length"]) for e in entries] == [("eager", 64), ("flex_attention", 64), ("eager", 96), ("flex_attention", 96)]
    assert all("error" not in e and e["tokens_per_s"] > 0 and e["real_tokens"] <= e["computed_tokens"] for e in entries)
    assert all(e["max_abs_logit_diff"] < 1e-4 for e in entries if e["attn"] == "flex_attention")
    assert len(lines) == 4 and all(line.startswith("| a | gemma-2-9b bf16 | predict |") for line in lines)


def test_student_training_pads_and_packs_the_same_rows(tmp_path):
    bench = empty_bench("cpu", None)
    lines, emit = collect()
    model = add_lora(random_model(TINY_GEMMA2, "gemma2", CPU, torch.float32, "eager"), PRESET_LORA)
    eager = [case for case in speed_comparisons.student_cases() if case.attn == "eager"]  # flex has no backward on the CPU
    speed_comparisons.student_training(bench, model, None, emit, lambda: 1e9, tmp_path, eager, 256, steps=1)
    padded, packed = bench["student_train"]
    assert "error" not in padded and "error" not in packed
    assert padded["real_tokens"] == packed["real_tokens"] == packed["computed_tokens"] < padded["computed_tokens"]
    # Micro-batches of 2 rows; the step's 8 rows of at most 256 tokens in one pack of 2,048.
    assert padded["passes"] == workload.ROWS_PER_STEP // 2 and packed["passes"] == 1
    speed_comparisons.student_training(bench, model, None, emit, lambda: 0.0, tmp_path, eager[:1], 256, steps=1)
    assert bench["student_train"][-1]["note"] == "not measured (out of time)"
    assert "not measured" in lines[-1] and lines[0].startswith("| b |")


def test_the_gradient_check_passes_a_path_equal_to_eager():
    """SDPA computes a Llama's attention exactly; on the GPU the candidate is flex (no flex backward on the CPU)."""
    check = gradient_check.gradient_check(CPU, TINY_LLAMA, "llama", 2, 96, 256, candidate="sdpa", vocab=256)
    fp32, bf16 = check["dtypes"]["float32"], check["dtypes"]["bfloat16"]
    assert check["passed"] and check["tokens"] <= 256 and check["rows"] >= 2
    assert fp32["max_error"] < 1e-5 and bf16["eager_max_error"] > 1e-3  # bf16 rounds: its limit is eager's own error
    assert any("lora_A" in line for line in tables.gradient_lines(check))


def test_the_gradient_verdict_tells_rounding_from_a_wrong_path():
    assert gradient_check.gradient_verdict({"lora_A": 2e-6, "logits": 1e-6}, None)["passed"]
    wrong = gradient_check.gradient_verdict({"lora_A": 0.2, "logits": 1e-6}, None)
    assert not wrong["passed"] and "lora_A at 2.00e-01" in wrong["error"]
    assert gradient_check.gradient_verdict({"lora_A": 0.03, "logits": 0.003}, {"lora_A": 0.015, "logits": 0.0})["passed"]
    assert not gradient_check.gradient_verdict({"lora_A": 0.3, "logits": 0.004}, {"lora_A": 0.015, "logits": 0.003})["passed"]


def test_the_teacher_comparison_loads_nf4_twice_and_trains_packed(tmp_path):
    bench = empty_bench("cpu", None)
    lines, emit = collect()
    speed_comparisons.teacher_comparison(bench, CPU, torch.float32, TINY_LLAMA, 2, None, emit, tmp_path, 32, 128, rows=8, steps=1)
    assert [e["kbit_upcast"] for e in bench["teacher_train"]] == [True, False]
    assert "error" not in bench["teacher_predict"][0]
    assert all("error" not in e and e["micro_batch_tokens"] == 128 for e in bench["teacher_train"])
    assert bench["teacher_logit_diff"] == 0.0  # fp32 on the CPU: nothing to upcast; on the GPU the base is bf16
    assert len(lines) == 3 and "kbit_upcast off" in lines[-1]


def test_the_deadline_interrupts_what_runs():
    started = time.monotonic()
    with pytest.raises(DeadlinePassed), benchmarks_phase.stop_at(started + 0.2):
        time.sleep(5)
    assert time.monotonic() - started < 2
    time.sleep(0.3)  # disarmed: nothing fires later


def test_the_projection_takes_the_paths_the_preset_runs():
    preset = effective_config([PRESET])
    bench = empty_bench("NVIDIA H100 80GB HBM3", 989.0)
    bench["student_predict"] = [
        {"attn": attn, "max_length": 2000, "mfu": mfu, "real_tokens": 1, "computed_tokens": 1}
        for attn, mfu in (("eager", 0.25), ("flex_attention", 0.38))
    ]
    today = {"case": "padded eager, micro-batches of 2 (today)", "attn": "eager", "packing": False, "micro_batch_size": 2, "mfu": 0.12}
    packed = {
        "case": "packed flex, 2,048 tokens (the preset)",
        "attn": "flex_attention",
        "packing": True,
        "micro_batch_tokens": 2048,
        "mfu": 0.2,
    }
    bench["student_train"] = [today, packed]
    bench["teacher_predict"] = [{"layers": 4, "max_length": 1024, "mfu": 0.5}]
    bench["teacher_train"] = [
        {"layers": 4, "kbit_upcast": upcast, "micro_batch_tokens": 4096, "mfu": mfu} for upcast, mfu in ((True, 0.2), (False, 0.25))
    ]
    measured, sources = projection.measured_mfus(bench, preset)
    assert measured == projection.Measured(0.38, 0.2, 0.5, 0.2)  # the preset keeps kbit_upcast on
    assert "packed flex, 2,048 tokens (the preset)" in sources["student training"]
    bench["student_predict"], bench["student_train"] = bench["student_predict"][:1], [today]
    measured, sources = projection.measured_mfus(bench, preset)
    assert (measured.student_forward, measured.student_train) == (0.25, 0.12) and "(today)" in sources["student training"]
    assert any("| b |" in line for line in tables.bench_lines(bench))


def test_the_phase_measures_in_order_records_failures_and_stops_at_the_deadline(tmp_path, monkeypatch):
    """The orchestration with stand-in measurements: (b) fails and (c) still runs; (c) overruns
    and is cut at the deadline; (d) and (e) never start; the report says all of it."""
    ran = []

    def runner(key: str, error: Exception | None = None, sleep: float = 0.0) -> Callable[[bench_session.Session], None]:
        def run(session: bench_session.Session) -> None:
            ran.append(key)
            if error is not None:
                raise error
            time.sleep(sleep)

        return run

    quick = [harness.Measurement(m.key, m.comparison, m.what, 0.1) for m in harness.MEASUREMENTS]
    runners = {
        "student_predict": runner("student_predict"),
        "student_train": runner("student_train", RuntimeError("boom")),
        "gradient_check": runner("gradient_check", sleep=30),
        "teacher": runner("teacher"),
        "gptq": runner("gptq"),
    }
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(benchmarks_phase, "MEASUREMENTS", quick)
    monkeypatch.setattr(benchmarks_phase, "RUNNERS", runners)
    warm = {"seconds": {"scoring": 40.0, "training": 70.0}, "graphs": 8, "errors": []}
    (tmp_path / "warm-flex.json").write_text(json.dumps(warm))
    sides = {name: subprocess.Popen([sys.executable, "-c", "pass"]) for name in ("warm-flex", "warm-gptq")}
    sides["warm-gptq"].wait()
    started = time.monotonic()
    phase = benchmarks_phase.benchmarks_phase
    result = harness.run_phase("benchmarks", lambda r: phase(r, tmp_path, tmp_path, started + 5.0, sides))
    assert ran == ["student_predict", "student_train", "gradient_check"] and time.monotonic() - started < 15
    assert result.status == harness.FAIL and "student_train: RuntimeError: boom" in result.error
    assert result.data["bench"]["not_measured"] == ["gradient_check (cut at the deadline)"]
    summary = "\n".join(result.lines)
    assert "FAILED: student_train: RuntimeError: boom" in summary and "gradient_check (cut at the deadline)" in summary
    assert "scoring 40 s, training 70 s" in summary and json.loads((tmp_path / "benchmarks.json").read_text())["errors"]
