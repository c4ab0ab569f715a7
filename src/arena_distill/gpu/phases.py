"""The phases of `make gpu-check` (`arena_distill.gpu.check`), each a plain function that
fills a Result and raises when what it checks does not hold; the benchmarks phase is
`arena_distill.gpu.benchmarks`.

They call the project's own code — `train`, `start_run`/`optimizer_step`, `add_lora`,
`load_model`, `predict_logits`, `quantize_model`, `load_classifier` and the Snakemake
workflow — so what passes here is what the cluster runs. Every phase but the workflow also
runs on the CPU with gloo and tiny sizes, which is how the test suite keeps them green.
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import importlib.metadata
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import yaml
from transformers import AutoConfig, AutoModelForSequenceClassification

from arena_distill.gpu import benchmarks, projection, tables
from arena_distill.gpu.harness import PHASE_BUDGETS, SMOKE_CONFIG, Deadline, Result, start_logged, wait_or_kill
from arena_distill.modeling.models import add_lora
from arena_distill.modeling.parallel import GROUP_TIMEOUT, Parallel
from arena_distill.training.loop import ClassificationTask, Examples, TrainConfig, start_run, train
from arena_distill.workflow.config import PRESET, copy_workflow

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
CORE_PACKAGES = (
    "transformers",
    "peft",
    "accelerate",
    "bitsandbytes",
    "gptqmodel",
    "optimum",
    "snakemake",
    "tokenizers",
)
REQUIRED_MODULES = (*CORE_PACKAGES, "safetensors", "pandas", "pyarrow", "sklearn", "jsonschema", "yaml")
VERSIONED = ("torch", *CORE_PACKAGES, "numpy", "pandas")
SMALL_LORA = {"r": 16, "alpha": 32, "dropout": 0.0}


def device_line() -> str:
    props = torch.cuda.get_device_properties(0)
    return f"{props.name} ({props.total_memory / 2**30:.0f} GiB), torch {torch.__version__}, CUDA {torch.version.cuda}"


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def command_output(*command: str) -> str | None:
    """First line of a command's output, None when it is missing or fails."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


# -- environment -----------------------------------------------------------------------------------------------------


def nf4_matmul_error() -> tuple[float, float]:
    """A bitsandbytes NF4 layer on the GPU: (relative error against its own dequantized
    weight, which must be rounding only; relative error against the bf16 weight, the
    quantization error itself)."""
    import bitsandbytes as bnb

    torch.manual_seed(0)
    layer = bnb.nn.Linear4bit(1024, 1024, bias=False, compute_dtype=torch.bfloat16, quant_type="nf4")
    weight = layer.weight.data.clone()
    layer = layer.cuda()  # quantizes
    x = torch.randn(64, 1024, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        y = layer(x).float()
        dequantized = bnb.functional.dequantize_4bit(layer.weight.data, layer.weight.quant_state).float()
    exact = x.float() @ dequantized.t()
    original = x.float() @ weight.cuda().float().t()
    return float((y - exact).norm() / exact.norm()), float((y - original).norm() / original.norm())


def gptq_kernel_cache() -> tuple[Path, list[str]]:
    """GPTQModel's JIT kernel cache and the compiled kernels in it (none: first use compiles)."""
    root = Path(os.environ.get("GPTQMODEL_TORCH_EXTENSIONS_DIR") or Path.home() / ".cache/gptqmodel/torch_extensions")
    return root, sorted(p.name for p in root.rglob("*.so")) if root.is_dir() else []


def environment_phase(result: Result) -> None:
    props = torch.cuda.get_device_properties(0)
    facts = {
        "python": sys.version.split()[0],
        "gpu": props.name,
        "memory_gib": round(props.total_memory / 2**30, 1),
        "compute_capability": f"{props.major}.{props.minor}",
        "torch_cuda": torch.version.cuda,
        "driver": command_output("nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"),
        "bf16": torch.cuda.is_bf16_supported(),
        "nccl": ".".join(map(str, torch.cuda.nccl.version())),
        "nvcc": command_output("nvcc", "--version"),
        **{f"version {name}": version(name) for name in VERSIONED},
    }
    failed = {}
    for module in REQUIRED_MODULES:
        try:
            importlib.import_module(module)
        except Exception as error:  # any import failure is a finding, whatever its type
            failed[module] = f"{type(error).__name__}: {error}"
    cache, kernels = gptq_kernel_cache()
    facts["gptq kernel cache"] = f"{cache}: {', '.join(kernels) or 'no compiled kernels (compiled on first use)'}"
    facts["GPTQMODEL_OFFLINE"] = os.environ.get("GPTQMODEL_OFFLINE")
    result.data.update(facts=facts, failed_imports=failed)
    result.lines += ["| item | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in facts.items())]
    result.lines += ["", "Imports that fail: " + (", ".join(f"{m} ({e})" for m, e in failed.items()) or "none")]
    print("gpu-check: imports that fail:", ", ".join(failed) or "none", flush=True)
    if "bitsandbytes" not in failed:
        own, quantization = nf4_matmul_error()
        result.data["nf4"] = {"vs_dequantized": own, "vs_bf16": quantization}
        result.lines.append(
            f"NF4 matmul on the GPU: relative error {own:.2e} against its dequantized weight, "
            f"{quantization:.3f} against the bf16 weight (the 4-bit rounding)"
        )
        if not own < 2e-2:
            raise RuntimeError(f"bitsandbytes NF4 matmul disagrees with its own dequantized weight ({own:.3g})")
    if failed:
        raise RuntimeError(f"modules that do not import: {', '.join(failed)}")


# -- collectives -----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def recorded(module: Any, name: str) -> Iterator[list[dict[str, Any]]]:
    """Record each call of `module.name` (tensor device, dtype and size, keyword arguments), then make it."""
    calls: list[dict[str, Any]] = []
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        tensor = next((a for a in args if isinstance(a, torch.Tensor)), None)
        calls.append(
            {
                "device": None if tensor is None else tensor.device,
                "dtype": None if tensor is None else tensor.dtype,
                "numel": None if tensor is None else tensor.numel(),
                "kwargs": dict(kwargs),
            }
        )
        return original(*args, **kwargs)

    setattr(module, name, wrapper)
    try:
        yield calls
    finally:
        setattr(module, name, original)


SMALL_LLAMA = {
    "vocab_size": 512,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "pad_token_id": 0,
    "num_labels": 3,
}


def small_classifier(device: torch.device, seed: int = 0) -> torch.nn.Module:
    """A 2-layer Llama classifier with LoRA, for the loop's collectives (not its learning)."""
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(AutoConfig.for_model("llama", **SMALL_LLAMA)).to(device)
    return add_lora(model, SMALL_LORA)


def random_examples(rows: int, length: int, vocab: int, seed: int) -> Examples:
    rng = np.random.default_rng(seed)
    ids = [rng.integers(1, vocab, length).tolist() for _ in range(rows)]
    return Examples(ids, {"label": rng.integers(0, 3, rows)})


def collectives_phase(result: Result, workdir: Path, backend: str | None = None, world: int = 2) -> None:
    """`train()` on a one-process group with `Parallel(world=world)` standing in for a
    multi-GPU job, so it issues every collective torchrun would: the flat gradient
    all-reduce, the float64 step totals and validation sums, the checkpoint barriers. Each
    must reach the group on this process's device (NCCL serves CUDA tensors only). Then a
    resume must load the optimizer state onto the CPU, code-free, before it moves it."""
    device = Parallel().device()
    backend = backend or ("cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo")
    shutil.rmtree(workdir, ignore_errors=True)  # a checkpoint of an earlier check would be resumed
    workdir.mkdir(parents=True)
    store = dist.FileStore(str(workdir / "store"), 1)
    dist.init_process_group(backend, store=store, rank=0, world_size=1, timeout=GROUP_TIMEOUT)
    try:
        parallel = Parallel(rank=0, world=world, local_rank=0)
        model = small_classifier(device)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        config = TrainConfig(learning_rate=1e-3, epochs=1, batch_size=8, micro_batch_size=2, eval_every=2, seed=0)
        run = dict(pad_id=0, checkpoint_dir=workdir / "checkpoints", fingerprint="gpu-check", parallel=parallel)
        train_set, val_set = random_examples(32, 48, 512, 1), random_examples(8, 48, 512, 2)
        with recorded(dist, "all_reduce") as reduces, recorded(dist, "barrier") as barriers:
            trained = train(model, ClassificationTask(), train_set, val_set, config, **run)
        losses = trained.state.losses
        counts = {
            "gradient_all_reduce": sum(c["numel"] == trainable and c["dtype"] == torch.float32 for c in reduces),
            "float64_all_reduce": sum(c["dtype"] == torch.float64 for c in reduces),
            "barriers": len(barriers),
        }
        result.data.update(backend=backend, steps=len(losses), losses=losses, all_reduce=len(reduces), **counts)
        result.lines += [
            f"Process group `{backend}`, 1 process standing in for {world}: {len(losses)} steps, loss {losses[0]:.4f} -> {losses[-1]:.4f}",
            f"Collectives: {len(reduces)} all_reduce ({counts['gradient_all_reduce']} of the {trainable:,} "
            f"gradients, {counts['float64_all_reduce']} float64 totals), {len(barriers)} barriers, on "
            f"{', '.join(sorted({str(c['device']) for c in reduces})) or 'no device'}",
        ]
        problems = collective_problems(reduces, device, counts, losses)
        if problems:
            raise RuntimeError("; ".join(problems))
        resume_check(result, device, config, train_set, val_set, run)
    finally:
        dist.destroy_process_group()


def collective_problems(reduces: list[dict[str, Any]], device: torch.device, counts: Mapping[str, int], losses: list[float]) -> list[str]:
    """What is wrong with the collectives a data-parallel `train()` issued: one gradient
    all-reduce per step, float64 totals and barriers, every tensor on the loop's device."""
    problems = []
    if not all(math.isfinite(loss) for loss in losses):
        problems.append(f"training loss is not finite: {losses}")
    if counts["gradient_all_reduce"] != len(losses) or not counts["float64_all_reduce"] or not counts["barriers"]:
        problems.append(f"train() did not issue the collectives of a data-parallel job: {counts} for {len(losses)} steps")
    elsewhere = sorted({str(c["device"]) for c in reduces if c["device"] != device})
    if elsewhere:
        problems.append(f"collectives got tensors on {elsewhere}, not on the loop's device {device}")
    return problems


def resume_check(
    result: Result,
    device: torch.device,
    config: TrainConfig,
    train_set: Examples,
    val_set: Examples,
    run: Mapping[str, Any],
) -> None:
    """Resume the run just trained: the checkpoint loads onto the CPU with weights_only, and
    the optimizer state then sits with the parameters."""
    model = small_classifier(device)
    with recorded(torch, "load") as loads:
        resumed = start_run(model, ClassificationTask(), train_set, val_set, config, **run)
    states = [t for state in resumed.optimizer.state.values() for t in state.values() if isinstance(t, torch.Tensor) and t.dim() > 0]
    places = sorted({str(t.device) for t in states})
    unsafe = [c["kwargs"] for c in loads if c["kwargs"].get("map_location") != "cpu" or not c["kwargs"].get("weights_only")]
    result.data.update(resumed_from=resumed.state.resumed_from, optimizer_state_devices=places)
    result.lines.append(
        f"Resume from step {resumed.state.resumed_from}: {len(loads)} torch.load calls, all "
        f"map_location='cpu' and weights_only; optimizer state on {', '.join(places)}"
    )
    if not resumed.state.resumed_from:
        raise RuntimeError("the run did not resume from its checkpoint")
    if unsafe:
        raise RuntimeError(f"a checkpoint loads without map_location='cpu' or weights_only: {unsafe}")
    if places != [str(next(model.parameters()).device)]:
        raise RuntimeError(f"optimizer state on {places}, not with the parameters")


# -- the workflow ----------------------------------------------------------------------------------------------------


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


def number(text: str) -> float:
    """A benchmark-file value; Snakemake writes "-" or "NA" where it measured nothing."""
    try:
        return float(text)
    except ValueError:
        return 0.0


def rule_timings(workdir: Path) -> dict[str, dict[str, float]]:
    """Snakemake's per-job benchmark files, per rule: jobs, summed and longest seconds, peak RSS."""
    timings: dict[str, dict[str, float]] = {}
    for path in sorted((workdir / "results/benchmarks").rglob("*.tsv")):
        rule = path.relative_to(workdir / "results/benchmarks").parts[0].removesuffix(".tsv")
        with path.open() as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        entry = timings.setdefault(rule, {"jobs": 0, "seconds": 0.0, "longest": 0.0, "max_rss_mb": 0.0})
        entry["jobs"] += 1
        entry["seconds"] += number(row["s"])
        entry["longest"] = max(entry["longest"], number(row["s"]))
        entry["max_rss_mb"] = max(entry["max_rss_mb"], number(row["max_rss"]))
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


# -- projection ------------------------------------------------------------------------------------------------------


def projection_phase(result: Result, bench: Mapping[str, Any] | None) -> None:
    if not bench or bench.get("peak_tflops") is None:
        raise RuntimeError("no benchmark MFU to project from (benchmarks failed, or the GPU's peak is not known)")
    from arena_distill.workflow.config import effective_config  # Snakemake's merge; a missing Snakemake fails this phase only

    preset = effective_config([PRESET])
    measured, sources = projection.measured_mfus(bench, preset)
    if all(value is None for value in measured.__dict__.values()):
        raise RuntimeError("no benchmark measured an MFU of a path the preset runs")
    stages = projection.project(preset, measured)
    result.data.update(measured=measured.__dict__, sources=sources, stages=[s.__dict__ for s in stages])
    result.lines += [
        "MFU used: " + "; ".join(f"{name} {source}" for name, source in sources.items()) + ". Each counts real tokens of "
        "real-length rows, so where a path pads, its padding is already in its MFU. Training stages on 8x H100 "
        f"(989 TFLOP/s each), L = {projection.TRAIN_TOKENS} tokens per row.",
        "",
        "| stage | jobs | hours per job | how |",
        "|---|---|---|---|",
    ]
    result.lines += [f"| {s.name} | {s.jobs} | {tables.fmt(s.hours, '.2f')} | {s.note} |" for s in stages]


def run_all(out: Path, deadline: Deadline, run_phase: Callable[..., Result]) -> list[Result]:
    """Every phase (`check.schedule`): the workflow's Snakemake from the first second, with
    GPTQModel's kernel build and the flex warm-up beside it, the environment and collectives
    phases in this process meanwhile; then the benchmarks, until the projection's budget before
    the deadline, and the projection."""
    scratch = benchmarks.scratch_dir()
    sides = {name: benchmarks.start_side(name, out, Path(scratch.name)) for name in ("warm-gptq", "warm-flex")}
    started = time.monotonic()
    workflow, command = start_workflow(out / "workflow")
    try:
        results = [
            run_phase("environment", environment_phase),
            run_phase("collectives", lambda r: collectives_phase(r, out / "collectives")),
        ]
        timeout = min(PHASE_BUDGETS["workflow"] - (time.monotonic() - started), deadline.left())
        results.append(run_phase("workflow", lambda r: workflow_phase(r, workflow, command, out / "workflow", timeout), started))
        until = time.monotonic() + deadline.left() - PHASE_BUDGETS["projection"]
        measured = run_phase("benchmarks", lambda r: benchmarks.benchmarks_phase(r, out, Path(scratch.name), until, sides))
        results += [measured, run_phase("projection", lambda r: projection_phase(r, measured.data.get("bench")))]
    finally:
        for process in (workflow, *sides.values()):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        scratch.cleanup()
    return results
