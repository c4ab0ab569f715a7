"""The benchmarks phase of `make gpu-check`: random-init models of the real configs, through the
project's own loading, training and scoring code, on rows whose lengths are drawn from the
1,000 bundled real arena votes at the preset's budgets (so padding costs what it costs), each
new path measured against today's in the same run, in the order of `harness.MEASUREMENTS`.

This module runs them: one runner per measurement on the phase's shared session, each started
only with its planned seconds left, none past the phase's deadline, one that fails recorded and
the next still run. The comparisons themselves live in `speed_comparisons`, `gradient_check` and
`gptq_bench`; the warm-ups beside the workflow in `side_processes`. Each entry records its
first call's seconds (a compile where there was one).
"""

from __future__ import annotations

import contextlib
import gc
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from arena_distill.gpu import projection, tables
from arena_distill.gpu.bench_session import Session, bench_errors, empty_bench, say
from arena_distill.gpu.gradient_check import CHECK_LAYERS, gradient_check
from arena_distill.gpu.harness import MEASUREMENTS, Result
from arena_distill.gpu.side_processes import finish_side, start_side
from arena_distill.gpu.speed_comparisons import student_cases, student_prediction, student_training, teacher_comparison
from arena_distill.gpu.workload import PRESET_LORA, many_compiles, preset_settings
from arena_distill.modeling import flops
from arena_distill.modeling.models import add_lora

TEACHER_LAYERS = 4
WARMUP_WAIT = 30.0
"""Seconds the phase waits for the flex warm-up to finish before it stops it."""


class DeadlinePassed(BaseException):
    """Raised into whatever runs when the benchmarks' time is up (`stop_at`); a BaseException, so
    that no handler of a measurement's own errors takes it for one."""


@contextlib.contextmanager
def stop_at(until: float) -> Iterator[None]:
    """`DeadlinePassed` at `until` (monotonic seconds), wherever the process is: a compile or a
    measurement that overruns cannot take the summary and the projection with it."""

    def expire(signum: int, frame: Any) -> None:
        raise DeadlinePassed

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(until - time.monotonic(), 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_student_predict(session: Session) -> None:
    settings = preset_settings()
    student_prediction(
        session.bench,
        session.student_model(),
        session.peak,
        session.emit,
        session.left,
        (settings["train_length"], settings["test_length"]),
    )


def run_student_train(session: Session) -> None:
    model = add_lora(session.student_model(), PRESET_LORA)  # no checkpointing: the preset's student
    student_training(
        session.bench,
        model,
        session.peak,
        session.emit,
        session.left,
        session.out / "bench",
        student_cases(),
        preset_settings()["train_length"],
    )


def run_gradient_check(session: Session) -> None:
    settings = preset_settings()
    check = gradient_check(
        torch.device("cuda"), projection.GEMMA2_9B, "gemma2", CHECK_LAYERS, settings["train_length"], settings["student_tokens"]
    )
    session.bench["gradient_check"] = check
    say(tables.gradient_lines(check))


def run_teacher(session: Session) -> None:
    settings = preset_settings()
    teacher_comparison(
        session.bench,
        torch.device("cuda"),
        torch.bfloat16,
        projection.LLAMA3_70B,
        TEACHER_LAYERS,
        session.peak,
        session.emit,
        session.out / "bench",
        settings["train_length"],
        settings["teacher_tokens"],
    )
    say([f"(d) largest logit difference, kbit_upcast off against on: {session.bench['teacher_logit_diff']:.3g}"])


def run_gptq(session: Session) -> None:
    """Waits for the GPTQ warm-up as long as (e) can spare, then (e) in its own process."""
    planned = next(m.seconds for m in MEASUREMENTS if m.key == "gptq")
    warmup = finish_side(session.sides["warm-gptq"], session.out, "warm-gptq", session.left() - 0.8 * planned)
    session.bench["warmups"]["gptq"] = warmup
    say(tables.warmup_lines({"gptq": session.bench["warmups"]["gptq"]}))
    session.sides["gptq"] = start_side("gptq", session.out, session.scratch)
    gptq = finish_side(session.sides["gptq"], session.out, "gptq", session.left())
    if gptq.get("error", "").startswith("still running"):
        session.bench["not_measured"].append("gptq (cut at the deadline)")
        return
    session.bench["gptq"] = gptq
    say(tables.gptq_lines(session.bench))


RUNNERS: dict[str, Callable[[Session], None]] = {
    "student_predict": run_student_predict,
    "student_train": run_student_train,
    "gradient_check": run_gradient_check,
    "teacher": run_teacher,
    "gptq": run_gptq,
}


def benchmarks_phase(result: Result, out: Path, scratch: Path, until: float, sides: dict[str, subprocess.Popen]) -> None:
    """The measurements of `harness.MEASUREMENTS` in their order while time allows (each
    needs its planned seconds left; none runs past `until`), after the flex warm-up (given
    `WARMUP_WAIT` s more, then stopped); one that fails is recorded and the next still runs."""
    name = torch.cuda.get_device_name(0)
    bench = empty_bench(name, flops.peak_tflops(name))
    result.data["bench"] = bench
    bench["warmups"]["flex"] = finish_side(sides["warm-flex"], out, "warm-flex", WARMUP_WAIT)
    say(tables.warmup_lines({"flex": bench["warmups"]["flex"]}))
    if sides["warm-gptq"].poll() is None:
        bench["notes"].append("The GPTQ warm-up was still running when the benchmarks started: it shared the GPU with (a) to (d).")
    session = Session(bench, out, scratch, until, sides)
    current = ""
    try:
        with many_compiles(), stop_at(until):
            for measurement in MEASUREMENTS:
                current = measurement.key
                if session.left() < measurement.seconds:
                    bench["not_measured"].append(current)
                    continue
                try:
                    RUNNERS[current](session)
                except Exception as error:  # one failed comparison must not stop the next
                    bench["errors"].append(f"{current}: {type(error).__name__}: {str(error)[:300]}")
                session.save()
                if current != "student_predict":
                    session.student.clear()
                gc.collect()  # PEFT-wrapped models hold reference cycles: their memory goes back only now
                torch.cuda.empty_cache()
    except DeadlinePassed:
        bench["not_measured"].append(f"{current} (cut at the deadline)")
    finally:
        session.student.clear()
        result.lines += [*tables.bench_lines(bench), "", *tables.warmup_lines(bench["warmups"])]
    if bench["not_measured"]:
        say([f"not measured (out of time): {', '.join(bench['not_measured'])}"])
    errors = bench_errors(bench)
    if errors:
        raise RuntimeError(f"{len(errors)} benchmark(s) failed, e.g. {errors[0]}")
