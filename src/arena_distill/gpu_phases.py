"""The phases of `make gpu-check` (`arena_distill.gpu_check`), each a plain function that
fills a Result and raises when what it checks does not hold.

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
import shutil
import signal
import subprocess
import sys
import tempfile
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

from arena_distill import gpu_bench
from arena_distill.gpu_check import Deadline, Result
from arena_distill.inference import predict_logits
from arena_distill.models import add_lora, load_model
from arena_distill.parallel import GROUP_TIMEOUT, Parallel
from arena_distill.workflow import copy_workflow
from arena_distill.training import ClassificationTask, Examples, TrainConfig, optimizer_step, start_run, train

REPO = Path(__file__).resolve().parents[2]
SMOKE_CONFIG = "config/gpu-smoke.yaml"
PRESET = REPO / "config" / "presets" / "blackpearl.yaml"
SMOKE_PROMPTS = {"train": 8, "extra": 4, "post_pretrain": 4}
"""Whole prompt groups of the bundled sample the smoke run trains on (about 21 rows each). On an
H100 with five GPU jobs at once, 12 training prompts and micro-batches of 4 reached
`quantize_student` in 258 s; these leave the last five jobs room in the workflow's budget."""
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
PREDICT_LENGTHS = (512, 1024, 2000)
PREDICT_MAX_TOKENS = 32768
"""The preset's `predict.max_tokens`: rows x longest of one scoring batch."""
TRAIN_LENGTH, MICRO_BATCH, TRAIN_ROWS_PER_STEP = 1024, 2, 4
"""Benchmark steps as the preset trains: 1024-token rows, micro-batches of 2."""
TEACHER_LAYERS = 4
GPTQ_LAYERS = 1
GPTQ_MIN_SECONDS = 60.0
"""The GPTQ benchmark runs only with this much of the budget left (it quantizes and reloads)."""
SMALL_LORA = {"r": 16, "alpha": 32, "dropout": 0.0}
PRESET_LORA = {"r": 64, "alpha": 128, "dropout": 0.05}


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


# -- (a) environment -------------------------------------------------------------------------------------------------


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


# -- (b) collectives -------------------------------------------------------------------------------------------------


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
            f"Process group `{backend}`, 1 process standing in for {world}: {len(losses)} steps, "
            f"loss {losses[0]:.4f} -> {losses[-1]:.4f}",
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


def collective_problems(
    reduces: list[dict[str, Any]], device: torch.device, counts: Mapping[str, int], losses: list[float]
) -> list[str]:
    """What is wrong with the collectives a data-parallel `train()` issued: one gradient
    all-reduce per step, float64 totals and barriers, every tensor on the loop's device."""
    problems = []
    if not all(math.isfinite(loss) for loss in losses):
        problems.append(f"training loss is not finite: {losses}")
    if counts["gradient_all_reduce"] != len(losses) or not counts["float64_all_reduce"] or not counts["barriers"]:
        problems.append(
            f"train() did not issue the collectives of a data-parallel job: {counts} for {len(losses)} steps"
        )
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
    states = [
        t
        for state in resumed.optimizer.state.values()
        for t in state.values()
        if isinstance(t, torch.Tensor) and t.dim() > 0
    ]
    places = sorted({str(t.device) for t in states})
    unsafe = [
        c["kwargs"] for c in loads if c["kwargs"].get("map_location") != "cpu" or not c["kwargs"].get("weights_only")
    ]
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


# -- (c) the workflow ------------------------------------------------------------------------------------------------


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
    small["training"].update(batch_size=16, micro_batch_size=16)
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


def run_logged(command: list[str], cwd: Path, log: Path, timeout: float) -> int:
    """Run `command` into `log`; past `timeout` its whole process group is killed."""
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise TimeoutError(f"{' '.join(command[2:4])} ran past {timeout:.0f} s; its log: {log}") from None


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
        raise RuntimeError(
            f"the llama teacher did not start from its post-pretrained adapter: {teacher.get('init_adapter')}"
        )
    student = json.loads((results / "student/fold0/metrics.json").read_text())
    return [
        f"Submission: {len(submission)} rows, every row a distribution",
        f"Exported model: {quantization.get('quant_method')} {quantization.get('bits')}-bit, group "
        f"{quantization.get('group_size')}",
        f"Teacher llama fold 0 starts from `{teacher['init_adapter']}`; val log loss {teacher['val_log_loss']:.4f}",
        f"Student fold 0: val log loss {student['val_log_loss']:.4f}, {student['tokens_per_second']:.0f} tokens/s",
    ]


SMOKE_TARGETS = ("results/submission.csv", "results/model", "results/eval/summary.md")
"""What `all` builds but the report's figures: they run no model, and the GPU machine's Python
has no matplotlib (the bundle carries only what the model rules need)."""


def workflow_phase(
    result: Result,
    workdir: Path,
    timeout: float,
    cores: int = 16,
    gpu_jobs: int = GPU_JOBS,
    cpu_sizes: bool = False,
    prompts: Mapping[str, int] = SMOKE_PROMPTS,
) -> None:
    """Every model rule of the workflow (`SMOKE_TARGETS`) under the smoke overlay in a private copy at `workdir`."""
    overlay = prepare_workflow(workdir, prompts, cpu_sizes)
    command = snakemake_command(overlay, cores, gpu_jobs, *SMOKE_TARGETS)
    result.lines.append(f"`{' '.join(['snakemake', *command[3:]])}` in `{workdir}`")
    code = run_logged(command, workdir, workdir / "snakemake.log", timeout)
    timings = rule_timings(workdir)
    result.data.update(returncode=code, timings=timings)
    result.lines += ["", "| rule | jobs | seconds (sum) | longest | max RSS MB |", "|---|---|---|---|---|"]
    result.lines += [
        f"| {rule} | {t['jobs']:.0f} | {t['seconds']:.1f} | {t['longest']:.1f} | {t['max_rss_mb']:.0f} |"
        for rule, t in sorted(timings.items(), key=lambda item: -item[1]["seconds"])
    ]
    if code != 0:
        tail = (workdir / "snakemake.log").read_text().splitlines()[-15:]
        result.lines += ["", "```", *tail, "```"]
        raise RuntimeError(f"snakemake exited with {code}; its log: {workdir / 'snakemake.log'}")
    result.lines += ["", *workflow_outputs(workdir)]


# -- (d) benchmarks --------------------------------------------------------------------------------------------------


def random_model(
    config: Mapping[str, Any],
    model_type: str,
    device: torch.device,
    dtype: torch.dtype,
    attn: str,
    layers: int | None = None,
    vocab: int | None = None,
) -> torch.nn.Module:
    """A random-init 3-way classifier of a real config (optionally fewer layers or a smaller
    vocabulary), built on `device` directly: no weights are read or written."""
    sizes = {
        "pad_token_id": 0,
        **config,
        **({"num_hidden_layers": layers} if layers else {}),
        **({"vocab_size": vocab} if vocab else {}),
    }
    hf_config = AutoConfig.for_model(model_type, **sizes, num_labels=3)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForSequenceClassification.from_config(hf_config, dtype=dtype, attn_implementation=attn)
    return model.eval()


def set_attention(model: torch.nn.Module, attn: str) -> None:
    """Switch the attention kernel of a built model (every layer reads it from the config)."""
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(attn)
    else:
        model.config._attn_implementation = attn


@contextlib.contextmanager
def measured(entry: dict[str, Any]) -> Iterator[None]:
    """Peak memory and wall seconds of a block into `entry`; an error is recorded, not raised."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.synchronize()
    started = time.perf_counter()
    try:
        yield
        torch.cuda.synchronize()
    except Exception as error:  # one failed measurement must not stop the others
        entry["error"] = f"{type(error).__name__}: {str(error)[:300]}"
    entry["seconds"] = time.perf_counter() - started
    entry["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30


def predict_speed(
    model: torch.nn.Module, shape: gpu_bench.Shape, length: int, peak: float | None, batches: int = 2
) -> dict[str, Any]:
    """Scoring tokens/s at `length` through the project's `predict_logits` (token-budgeted batches)."""
    rows = max(1, PREDICT_MAX_TOKENS // length) * batches
    sequences = random_examples(rows, length, model.config.vocab_size, length).ids
    predict_logits(model, sequences[: max(1, rows // batches)], pad_id=0, max_tokens=PREDICT_MAX_TOKENS)  # warm-up
    entry: dict[str, Any] = {"length": length, "rows": rows}
    with measured(entry):
        logits = predict_logits(model, sequences, pad_id=0, max_tokens=PREDICT_MAX_TOKENS)
        if not np.isfinite(logits).all():
            raise RuntimeError("non-finite logits")
    if "error" not in entry:
        entry["tokens_per_s"] = rows * length / entry["seconds"]
        entry["mfu"] = gpu_bench.mfu(entry["tokens_per_s"], shape.forward_flops(length), peak)
    return entry


def train_speed(
    model: torch.nn.Module, shape: gpu_bench.Shape, peak: float | None, workdir: Path, steps: int = 3
) -> dict[str, Any]:
    """LoRA training tokens/s of the project's optimizer step (micro-batches of 2 x 1024
    tokens, bf16 autocast), after one warm-up step."""
    examples = random_examples(TRAIN_ROWS_PER_STEP * (steps + 1), TRAIN_LENGTH, model.config.vocab_size, 3)
    config = TrainConfig(learning_rate=5e-5, batch_size=TRAIN_ROWS_PER_STEP, micro_batch_size=MICRO_BATCH, seed=0)
    run = start_run(
        model,
        ClassificationTask(),
        examples,
        examples,
        config,
        pad_id=0,
        checkpoint_dir=workdir / "bench-checkpoints",
        fingerprint="bench",
        parallel=Parallel(),
    )
    plan = [list(range(i * TRAIN_ROWS_PER_STEP, (i + 1) * TRAIN_ROWS_PER_STEP)) for i in range(steps + 1)]
    entry: dict[str, Any] = {"tokens_per_step": TRAIN_ROWS_PER_STEP * TRAIN_LENGTH}
    model.train()  # gradient checkpointing and dropout act in training mode only
    optimizer_step(run, plan[0])
    with measured(entry):
        losses = [optimizer_step(run, rows) for rows in plan[1:]]
        if not all(math.isfinite(loss) for loss in losses):
            raise RuntimeError(f"non-finite loss {losses}")
    if "error" not in entry:
        entry["tokens_per_s"] = steps * TRAIN_ROWS_PER_STEP * TRAIN_LENGTH / entry["seconds"]
        entry["mfu"] = gpu_bench.mfu(entry["tokens_per_s"], shape.lora_train_flops(TRAIN_LENGTH), peak)
    run.optimizer.zero_grad(set_to_none=True)
    return entry


def student_benchmarks(bench: dict[str, Any], peak: float | None, deadline: Deadline, workdir: Path) -> None:
    """gemma-2-9b at its full size in bf16: scoring (eager and SDPA) and LoRA training
    (with and without gradient checkpointing)."""
    shape = gpu_bench.Shape.of(gpu_bench.GEMMA2_9B)
    model = random_model(gpu_bench.GEMMA2_9B, "gemma2", torch.device("cuda"), torch.bfloat16, "eager")
    for attn in ("eager", "sdpa"):
        try:
            set_attention(model, attn)
        except ValueError as refused:  # transformers 5.23 refuses SDPA for Gemma-2 (it cannot soft-cap)
            bench["student_predict"].append({"attn": attn, "length": None, "note": f"refused: {str(refused)[:120]}"})
            continue
        for length in PREDICT_LENGTHS:
            if deadline.left() < 20:
                return
            bench["student_predict"].append({"attn": attn, **predict_speed(model, shape, length, peak)})
    set_attention(model, "eager")
    model = add_lora(model, PRESET_LORA, gradient_checkpointing=True)
    for checkpointing in (True, False):
        if deadline.left() < 20:
            return
        if not checkpointing:
            model.base_model.model.gradient_checkpointing_disable()
        bench["student_train"].append(
            {"gradient_checkpointing": checkpointing, **train_speed(model, shape, peak, workdir)}
        )


def save_random(
    config: Mapping[str, Any], model_type: str, directory: Path, layers: int, vocab: int | None = None
) -> None:
    """A random-init bf16 checkpoint of a real config cut to `layers` layers (built on the GPU)."""
    model = random_model(config, model_type, torch.device("cuda"), torch.bfloat16, "eager", layers=layers, vocab=vocab)
    model.save_pretrained(directory)


def scratch_dir() -> tempfile.TemporaryDirectory:
    """Memory-backed scratch space where there is one: checkpoints here are written and read once."""
    shm = Path("/dev/shm")
    return tempfile.TemporaryDirectory(dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else None)


def teacher_benchmarks(bench: dict[str, Any], peak: float | None, workdir: Path) -> None:
    """A Llama-3-70B-shaped stack of a few layers, 4-bit NF4 through the project's
    `load_model`: QLoRA training with gradient checkpointing, and scoring at 1024 tokens."""
    shape = gpu_bench.Shape.of({**gpu_bench.LLAMA3_70B, "num_hidden_layers": TEACHER_LAYERS})
    with scratch_dir() as tmp:
        save_random(gpu_bench.LLAMA3_70B, "llama", Path(tmp), TEACHER_LAYERS)
        model = load_model(
            tmp,
            pad_token_id=0,
            seed=0,
            dtype=torch.bfloat16,
            load_in_bits=4,
            device="cuda:0",
            attn_implementation="sdpa",
        )
    bench["teacher_predict"].append({"layers": TEACHER_LAYERS, **predict_speed(model, shape, 1024, peak)})
    model = add_lora(model, PRESET_LORA, gradient_checkpointing=True)
    bench["teacher_train"].append(
        {"layers": TEACHER_LAYERS, "gradient_checkpointing": True, **train_speed(model, shape, peak, workdir)}
    )


def sample_tokenizer(rows: int) -> tuple[list[str], Any]:
    """Formatted pairs of the bundled sample and a BPE tokenizer trained on them: GPTQ
    calibrates on real text, as `quantize_student` does."""
    from arena_distill.text import format_pair
    from arena_distill.tokenizer import train_bpe_tokenizer

    frame = pd.read_parquet(REPO / "data/sample/train.parquet").head(rows)
    texts = [
        format_pair(*map(json.loads, row))
        for row in frame[["prompt", "response_a", "response_b"]].itertuples(index=False)
    ]
    return texts, train_bpe_tokenizer(texts, vocab_size=4000)


def export_gptq(config: Mapping[str, Any], layers: int, tmp: Path, rows: int, seqlen: int) -> tuple[Path, Path, float]:
    """A random-init Gemma-2 of `config` cut to `layers` layers, saved in bf16 (`tmp/merged`)
    and exported through the project's GPTQ 8-bit path (`tmp/gptq`); returns both and the
    export's seconds."""
    from arena_distill.quantize import quantize_model

    texts, tokenizer = sample_tokenizer(rows)
    merged, exported = tmp / "merged", tmp / "gptq"
    save_random({**config, "pad_token_id": tokenizer.eos_token_id}, "gemma2", merged, layers, vocab=len(tokenizer))
    tokenizer.save_pretrained(merged)
    started = time.perf_counter()
    quantize_model(
        merged, exported, method="gptq", bits=8, group_size=128, calibration_texts=texts[:32], model_seqlen=seqlen
    )
    return merged, exported, time.perf_counter() - started


def gptq_kernels(model: torch.nn.Module) -> list[str]:
    """The GPTQModel layer classes a loaded model runs (MarlinLinear, TritonV2Linear, ...)."""
    return sorted({type(m).__name__ for m in model.modules() if type(m).__module__.startswith("gptqmodel")})


def warm_gptq_kernels(out: Path) -> dict[str, Any]:
    """Export and load a one-layer model at the smoke student's widths, as `quantize_student`
    and `predict` do, so that GPTQModel builds its JIT kernels (CPU packing, then Marlin:
    minutes on a fresh machine) into its cache. The check runs this beside its first phases;
    the workflow's GPTQ jobs then wait on GPTQModel's build lock, not on a build of their own."""
    from arena_distill.prediction import load_classifier

    smoke = yaml.safe_load((REPO / SMOKE_CONFIG).read_text())
    started = time.perf_counter()
    with scratch_dir() as tmp:
        _, exported, _ = export_gptq(smoke["student"]["tiny"], 1, Path(tmp), rows=40, seqlen=256)
        model, _ = load_classifier(exported)
        predict_logits(model, random_examples(4, 64, model.config.vocab_size, 0).ids, pad_id=0, max_tokens=4096)
        entry = {"seconds": time.perf_counter() - started, "kernels": gptq_kernels(model)}
    (out / "gptq-warm.json").write_text(json.dumps(entry, indent=1))
    return entry


def start_kernel_warmup(out: Path) -> subprocess.Popen:
    """`warm_gptq_kernels` in its own process (into `out/gptq-warm.log`), started first."""
    log = (out / "gptq-warm.log").open("w")
    command = [sys.executable, "-m", "arena_distill.gpu_phases", "warm", str(out)]
    return subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def gptq_benchmark(out: Path) -> dict[str, Any]:
    """gemma-2-9b cut to a few layers (and a small vocabulary): merged bf16 against its GPTQ
    8-bit export, both scored through the project's loading and scoring code at 1024
    tokens. The full model's GPTQ speed is its bf16 speed times this ratio."""
    from arena_distill.prediction import load_classifier

    entry: dict[str, Any] = {"layers": GPTQ_LAYERS}
    with scratch_dir() as tmp:
        merged, exported, seconds = export_gptq(gpu_bench.GEMMA2_9B, GPTQ_LAYERS, Path(tmp), rows=400, seqlen=1024)
        entry["quantize_seconds"] = seconds
        shape = gpu_bench.Shape.of({**gpu_bench.GEMMA2_9B, "num_hidden_layers": GPTQ_LAYERS})
        for name, directory in (("bf16", merged), ("gptq", exported)):
            model, _ = load_classifier(directory)
            entry[name] = predict_speed(model, shape, 1024, None)
            entry[name]["dtype"] = str(next(model.parameters()).dtype)
            if name == "gptq":
                entry["kernels"] = gptq_kernels(model)
            del model
            torch.cuda.empty_cache()
    (out / "gptq-bench.json").write_text(json.dumps(entry, indent=1))
    return entry


def finish_warmup(warmup: subprocess.Popen, out: Path, timeout: float) -> dict[str, Any]:
    """Wait up to `timeout` s for the kernel warm-up; what it built and how long it took."""
    try:
        code = warmup.wait(timeout=max(timeout, 0.0))
    except subprocess.TimeoutExpired:
        os.killpg(warmup.pid, signal.SIGKILL)
        warmup.wait()
        return {"error": "still building at the deadline, see gptq-warm.log"}
    if code != 0:
        return {"error": f"exit {code}, see gptq-warm.log"}
    return json.loads((out / "gptq-warm.json").read_text())


def benchmarks_phase(result: Result, out: Path, deadline: Deadline, warmup: subprocess.Popen | None = None) -> None:
    """Tokens/s, MFU and peak memory of random-init models of the real configs; each
    measurement runs while the deadline allows, and one that fails is recorded. The GPTQ
    measurement waits for the kernel warm-up first, so it times kernels, not their build."""
    name = torch.cuda.get_device_name(0)
    peak = gpu_bench.peak_tflops(name)
    bench: dict[str, Any] = {
        "gpu": name,
        "peak_tflops": peak,
        "student_predict": [],
        "student_train": [],
        "teacher_predict": [],
        "teacher_train": [],
        "gptq": None,
    }
    result.data["bench"] = bench
    try:
        student_benchmarks(bench, peak, deadline, out)
        torch.cuda.empty_cache()
        if deadline.left() > 40:
            teacher_benchmarks(bench, peak, out)
    finally:
        torch.cuda.empty_cache()
        result.lines += bench_lines(bench)
    if warmup is not None:
        bench["gptq_warmup"] = finish_warmup(warmup, out, deadline.left() - GPTQ_MIN_SECONDS)
        result.lines += warmup_lines(bench["gptq_warmup"])
    if deadline.left() > GPTQ_MIN_SECONDS:
        gptq = out / "gptq-bench.json"
        command = [sys.executable, "-m", "arena_distill.gpu_phases", "gptq", str(out)]
        code = run_logged(command, REPO, out / "gptq-bench.log", deadline.left() - 10)
        bench["gptq"] = json.loads(gptq.read_text()) if code == 0 else {"error": f"exit {code}, see gptq-bench.log"}
        result.lines += gptq_lines(bench)
    else:
        result.lines.append("GPTQ 8-bit: not measured (out of time)")
    errors = [
        e["error"]
        for key in ("student_predict", "student_train", "teacher_predict", "teacher_train")
        for e in bench[key]
        if "error" in e
    ]
    errors += [
        f"{key}: {bench[key]['error']}"
        for key in ("gptq_warmup", "gptq")
        if (bench.get(key) or {}).get("error")
    ]
    if errors:
        raise RuntimeError(f"{len(errors)} benchmark(s) failed, e.g. {errors[0]}")


def fmt(value: float | None, pattern: str) -> str:
    return "n/a" if value is None else format(value, pattern)


def bench_lines(bench: Mapping[str, Any]) -> list[str]:
    lines = [
        f"Peak: {fmt(bench['peak_tflops'], '.0f')} TFLOP/s dense bf16 ({bench['gpu']}); "
        "MFU counts model FLOPs (gpu_bench), not recomputation.",
        "",
        "| model | work | setting | tokens/s | MFU | peak GiB | note |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = [("gemma-2-9b bf16", "predict", f"{e['attn']}, {e['length']} tokens", e) for e in bench["student_predict"]]
    rows += [
        (
            "gemma-2-9b bf16 + LoRA r64",
            "train",
            f"eager, mb 2 x 1024, ckpt {'on' if e['gradient_checkpointing'] else 'off'}",
            e,
        )
        for e in bench["student_train"]
    ]
    rows += [
        (f"Llama-3-70B shape, {e['layers']} layers, NF4", "predict", "sdpa, 1024 tokens", e)
        for e in bench["teacher_predict"]
    ]
    rows += [
        (f"Llama-3-70B shape, {e['layers']} layers, NF4 + LoRA r64", "train", "sdpa, mb 2 x 1024, ckpt on", e)
        for e in bench["teacher_train"]
    ]
    for model, work, setting, e in rows:
        lines.append(
            f"| {model} | {work} | {setting} | {fmt(e.get('tokens_per_s'), ',.0f')} | "
            f"{fmt(e.get('mfu'), '.1%')} | {e.get('peak_gib', 0):.1f} | {e.get('error', e.get('note', ''))} |"
        )
    return lines


def warmup_lines(warm: Mapping[str, Any]) -> list[str]:
    if warm.get("error"):
        return ["", f"GPTQ kernel warm-up: FAILED ({warm['error']})"]
    return [
        "",
        f"GPTQ kernels built on first use (one-layer export and load, beside the first phases): "
        f"{warm['seconds']:.0f} s; the loaded model runs {', '.join(warm['kernels']) or 'no GPTQModel layer'}",
    ]


def gptq_lines(bench: Mapping[str, Any]) -> list[str]:
    gptq = bench["gptq"]
    if gptq.get("error"):
        return ["", f"GPTQ 8-bit: FAILED ({gptq['error']})"]
    ratio = gptq["gptq"]["tokens_per_s"] / gptq["bf16"]["tokens_per_s"]
    full = next(
        (e for e in bench["student_predict"] if e["attn"] == "eager" and e["length"] == 1024 and "tokens_per_s" in e),
        None,
    )
    scaled = "" if full is None else f"; scaled to the full model: about {full['tokens_per_s'] * ratio:,.0f} tokens/s"
    return [
        "",
        f"GPTQ 8-bit (gemma-2-9b cut to {gptq['layers']} layers, quantized in {gptq['quantize_seconds']:.0f} s, "
        f"kernels {', '.join(gptq['kernels'])}): {gptq['gptq']['tokens_per_s']:,.0f} tokens/s against "
        f"{gptq['bf16']['tokens_per_s']:,.0f} for its {gptq['bf16']['dtype']} merge at 1024 tokens, "
        f"ratio {ratio:.2f}{scaled}",
    ]


# -- (e) projection --------------------------------------------------------------------------------------------------


def best_mfu(entries: list[Mapping[str, Any]], **match: Any) -> float | None:
    found = [e["mfu"] for e in entries if e.get("mfu") is not None and all(e.get(k) == v for k, v in match.items())]
    return max(found) if found else None


def measured_mfus(bench: Mapping[str, Any]) -> gpu_bench.Measured:
    """The MFU each projected stage runs at: scoring near the test length (eager, as the
    student runs), the preset's training with gradient checkpointing, the NF4 teacher."""
    return gpu_bench.Measured(
        student_forward=best_mfu(bench["student_predict"], attn="eager", length=512),
        student_train=best_mfu(bench["student_train"], gradient_checkpointing=True),
        teacher_forward=best_mfu(bench["teacher_predict"]),
        teacher_train=best_mfu(bench["teacher_train"]),
    )


def projection_phase(result: Result, bench: Mapping[str, Any] | None) -> None:
    if not bench or bench.get("peak_tflops") is None:
        raise RuntimeError("no benchmark MFU to project from (benchmarks failed, or the GPU's peak is not known)")
    measured = measured_mfus(bench)
    from arena_distill.workflow import effective_config  # Snakemake's merge; a missing Snakemake fails this phase only

    stages = gpu_bench.project(effective_config([PRESET]), measured)
    result.data.update(measured=measured.__dict__, stages=[s.__dict__ for s in stages])
    result.lines += [
        f"MFU used: student scoring {fmt(measured.student_forward, '.1%')} (eager, 512 tokens), student "
        f"training {fmt(measured.student_train, '.1%')}, teacher scoring "
        f"{fmt(measured.teacher_forward, '.1%')}, teacher training {fmt(measured.teacher_train, '.1%')}. "
        f"Training stages on 8x H100 (989 TFLOP/s each), L = {gpu_bench.TRAIN_TOKENS} tokens per row.",
        "",
        "| stage | jobs | hours per job | how |",
        "|---|---|---|---|",
    ]
    result.lines += [f"| {s.name} | {s.jobs} | {fmt(s.hours, '.2f')} | {s.note} |" for s in stages]


def run_all(
    out: Path, deadline: Deadline, run_phase: Callable[[str, Callable[[Result], None]], Result]
) -> list[Result]:
    """Every phase in order, each within its budget; GPTQModel's kernels build meanwhile."""
    warmup = start_kernel_warmup(out)
    try:
        results = [
            run_phase("environment", environment_phase),
            run_phase("collectives", lambda r: collectives_phase(r, out / "collectives")),
            run_phase("workflow", lambda r: workflow_phase(r, out / "workflow", deadline.budget("workflow"))),
        ]
        benchmarks = run_phase("benchmarks", lambda r: benchmarks_phase(r, out, deadline, warmup))
        results += [benchmarks, run_phase("projection", lambda r: projection_phase(r, benchmarks.data.get("bench")))]
    finally:
        if warmup.poll() is None:
            os.killpg(warmup.pid, signal.SIGKILL)
            warmup.wait()
    return results


SUBPROCESSES = {"gptq": gptq_benchmark, "warm": warm_gptq_kernels}
"""What runs in a process of its own: GPTQModel's kernels and export state stay out of the check's."""

if __name__ == "__main__" and sys.argv[1:2] and sys.argv[1] in SUBPROCESSES:
    SUBPROCESSES[sys.argv[1]](Path(sys.argv[2]))
