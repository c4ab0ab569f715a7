"""The workflow phase of `make gpu-check`: the whole Snakemake workflow on the GPU under
`config/gpu-smoke.yaml`, in a private copy with a cut of the bundled sample, in processes of its
own from the check's first second (the other phases run beside it); then its per-rule timings
and a check of what it must have produced. The same copy shrinks to CPU sizes (`shrunk`), which
is how the test suite plans the whole DAG and runs its 4-bit teacher rules without a GPU.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from arena_distill.gpu.harness import SMOKE_CONFIG, Result, start_logged, wait_or_kill
from arena_distill.io import read_benchmark
from arena_distill.workflow.config import copy_workflow

SMOKE_PROMPTS = {"train": 6, "extra": 3, "post_pretrain": 3}
"""Whole prompt groups of the bundled sample the smoke run trains on (about 21 rows each). Every
GPU job pays 15 to 20 s before its first step, so the workflow's time is its critical path of
jobs more than their work: on an H100 with five GPU jobs at once, 8 training prompts reached 29
of 33 jobs in 300 s while GPTQModel compiled Marlin (now built beside the workflow). Fewer rows
leave room for the flex compiles of the student's jobs."""
GPU_JOBS = 5
GPU_RULES = (
    "post_pretrain",
    "train_teacher",
    "teacher_logits",
    "distill_student",
    "quantize_student",
    "calibrate_submission",
    "predict",
    "score_holdout",
    "prompt_judge",
)


def cut_sample(workdir: Path, prompts: Mapping[str, int]) -> dict[str, int]:
    """The first prompt groups of each bundled table under `gpu-smoke/` (whole groups keep
    the folds grouped); returns the rows kept per table."""
    (workdir / "gpu-smoke").mkdir(exist_ok=True)
    rows = {}
    for table, count in prompts.items():
        frame = pd.read_parquet(workdir / f"data/sample/{table}.parquet")
        chosen = sorted(frame["prompt"].unique())[:count]
        frame[frame["prompt"].isin(chosen)].to_parquet(workdir / f"gpu-smoke/{table}.parquet", index=False)
        rows[table] = int(frame["prompt"].isin(chosen).sum())
    return rows


def shrunk(overlay: Mapping[str, Any]) -> dict[str, Any]:
    """The smoke overlay at CPU sizes (hidden 64, 2 layers, short texts): same keys, same code
    paths. 64 is the smallest width bitsandbytes' CPU NF4 kernel takes (its block size)."""
    small = json.loads(json.dumps(overlay))
    sizes = {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "intermediate_size": 128,
        "max_position_embeddings": 512,
    }
    for spec in [*small["teachers"].values(), small["student"]]:
        spec["tiny"] = dict(sizes)
        spec["lora"]["r"], spec["lora"]["alpha"] = 8, 16
    small["text"] = {"train_max_length": 96, "test_max_length": 128, "prompt_tokens": 32}
    small["tokenizer"] = {"vocab_size": 500, "max_texts": 200}
    small["training"].update(batch_size=16, micro_batch_size=16, micro_batch_tokens=768)  # two packs a step: accumulation runs
    small["student"]["training"]["micro_batch_tokens"] = 384
    small["quantize"].update(group_size=32, n_calibration=4, model_seqlen=96)
    return small


def prepare_workflow(workdir: Path, prompts: Mapping[str, int] = SMOKE_PROMPTS, cpu_sizes: bool = False) -> str:
    """A private workflow copy with its cut sample; returns the overlay file to run with."""
    shutil.rmtree(workdir, ignore_errors=True)
    copy_workflow(workdir)
    cut_sample(workdir, prompts)
    if not cpu_sizes:
        return SMOKE_CONFIG
    overlay = shrunk(yaml.safe_load((workdir / SMOKE_CONFIG).read_text()))
    (workdir / "gpu-smoke/cpu.yaml").write_text(yaml.safe_dump(overlay))
    return "gpu-smoke/cpu.yaml"


def snakemake_command(overlay: str, cores: int, gpu_jobs: int, *extra: str) -> list[str]:
    """The local profile under the smoke overlay, at most `gpu_jobs` GPU jobs at once; the
    greedy scheduler needs no ILP solver (PuLP stays out of the GPU bundle)."""
    per_rule = [f"{rule}:gpu_jobs=1" for rule in GPU_RULES]
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--profile",
        "profiles/local",
        "--configfile",
        overlay,
        "--cores",
        str(cores),
        "--resources",
        f"gpu_jobs={gpu_jobs}",
        "--set-resources",
        *per_rule,
        "--scheduler",
        "greedy",
        *extra,
    ]


def rule_timings(workdir: Path) -> dict[str, dict[str, float]]:
    """Snakemake's per-job benchmark files, per rule: jobs, summed and longest seconds, peak RSS."""
    timings: dict[str, dict[str, float]] = {}
    for path in sorted((workdir / "results/benchmarks").rglob("*.tsv")):
        rule = path.relative_to(workdir / "results/benchmarks").parts[0].removesuffix(".tsv")
        measured = read_benchmark(path) or {}
        seconds, rss = measured.get("seconds") or 0.0, measured.get("max_rss_mib") or 0.0
        entry = timings.setdefault(rule, {"jobs": 0, "seconds": 0.0, "longest": 0.0, "max_rss_mb": 0.0})
        entry["jobs"] += 1
        entry["seconds"] += seconds
        entry["longest"] = max(entry["longest"], seconds)
        entry["max_rss_mb"] = max(entry["max_rss_mb"], rss)
    return timings


def workflow_outputs(workdir: Path) -> list[str]:
    """What the run must have produced; raises on the first thing missing or wrong."""
    results = workdir / "results"
    submission = pd.read_csv(results / "submission.csv")
    probs = submission.iloc[:, 1:].to_numpy()
    if not (np.isfinite(probs).all() and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)):
        raise RuntimeError("the submission's rows are not probability distributions")
    quantization = json.loads((results / "model/config.json").read_text()).get("quantization_config", {})
    teacher = json.loads((results / "teachers/llama/fold0/metrics.json").read_text())
    if teacher.get("init_adapter") != "results/models/llama/post_pretrain/adapter":
        raise RuntimeError(f"the llama teacher did not start from its post-pretrained adapter: {teacher.get('init_adapter')}")
    student = json.loads((results / "student/fold0/metrics.json").read_text())
    return [
        f"Submission: {len(submission)} rows, every row a distribution",
        f"Exported model: {quantization.get('quant_method')} {quantization.get('bits')}-bit, group {quantization.get('group_size')}",
        f"Teacher llama fold 0 starts from `{teacher['init_adapter']}`; val log loss {teacher['val_log_loss']:.4f}",
        f"Student fold 0: val log loss {student['val_log_loss']:.4f}, {student['tokens_per_second']:.0f} tokens/s",
    ]


SMOKE_TARGETS = ("results/submission.csv", "results/model", "results/eval/summary.md")
"""What `all` builds but the report's figures: they run no model, and the GPU machine's Python
has no matplotlib (the bundle carries only what the model rules need)."""


def start_workflow(
    workdir: Path, cores: int = 16, gpu_jobs: int = GPU_JOBS, cpu_sizes: bool = False, prompts: Mapping[str, int] = SMOKE_PROMPTS
) -> tuple[subprocess.Popen, list[str]]:
    """Snakemake on every model rule of the workflow (`SMOKE_TARGETS`) under the smoke overlay, in a
    private copy at `workdir` and in processes of its own (the check's phases run beside it)."""
    overlay = prepare_workflow(workdir, prompts, cpu_sizes)
    command = snakemake_command(overlay, cores, gpu_jobs, *SMOKE_TARGETS)
    return start_logged(command, workdir, workdir / "snakemake.log"), command


def steps_done(log: Path) -> str:
    """Snakemake's last progress count in `log` ("29 of 33 steps (88%) done"), or what stands for none."""
    counts = re.findall(r"\d+ of \d+ steps \(\d+%\) done", log.read_text(errors="replace")) if log.is_file() else []
    return counts[-1] if counts else "no step done"


def workflow_phase(result: Result, process: subprocess.Popen, command: list[str], workdir: Path, timeout: float) -> None:
    """Wait up to `timeout` s for the Snakemake run `start_workflow` started, then its per-rule
    timings and its outputs; a run stopped at its budget reports how far it got."""
    result.lines.append(f"`{' '.join(['snakemake', *command[3:]])}` in `{workdir}`")
    code = wait_or_kill(process, timeout)
    timings = rule_timings(workdir)
    progress = steps_done(workdir / "snakemake.log")
    result.data.update(returncode=code, timings=timings, progress=progress)
    result.lines += ["", f"Snakemake: {progress}.", "", "| rule | jobs | seconds (sum) | longest | max RSS MB |", "|---|---|---|---|---|"]
    result.lines += [
        f"| {rule} | {t['jobs']:.0f} | {t['seconds']:.1f} | {t['longest']:.1f} | {t['max_rss_mb']:.0f} |"
        for rule, t in sorted(timings.items(), key=lambda item: -item[1]["seconds"])
    ]
    if code != 0:
        tail = (workdir / "snakemake.log").read_text(errors="replace").splitlines()[-15:]
        result.lines += ["", "```", *tail, "```"]
        reason = f"ran past its {timeout:.0f} s" if code is None else f"exited with {code}"
        raise RuntimeError(f"snakemake {reason} at {progress}; its log: {workdir / 'snakemake.log'}")
    result.lines += ["", *workflow_outputs(workdir)]
