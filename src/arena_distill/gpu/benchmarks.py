"""The benchmarks phase of `make gpu-check`: random-init models of the real configs, through the
project's own loading, training and scoring code, on rows whose lengths are drawn from the
1,000 bundled real arena votes at the preset's budgets (so padding costs what it costs), each
new path measured against today's in the same run, in the order of `harness.MEASUREMENTS`.

Comparisons (a) to (d) also run on the CPU at tiny sizes (FlexAttention's forward included, its
backward is GPU-only), which is how the test suite keeps them green. Two side processes start
with the check and run beside the workflow: GPTQModel's kernel build and the export of the
GPTQ benchmark model (`warm_gptq`), and the flex_attention kernels of the benchmarks, compiled
on a narrow model with gemma-2-9b's attention (`warm_flex`) into inductor's on-disk cache by the
same calls in the same order: the first call's graph is compiled for its shape and every later
one for any length, so the benchmarks find each graph compiled. Each entry records its first
call's seconds (a compile where there was one).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import yaml
from transformers import AutoConfig, AutoModelForSequenceClassification

from arena_distill.data.tables import read_pairs
from arena_distill.data.text import TextConfig, approximate_lengths
from arena_distill.gpu import projection, tables
from arena_distill.gpu.harness import MEASUREMENTS, REPO, SMOKE_CONFIG, Result, start_logged, wait_or_kill
from arena_distill.modeling import flops
from arena_distill.modeling.batching import token_budget_batches
from arena_distill.modeling.inference import predict_logits
from arena_distill.modeling.models import add_lora, load_model
from arena_distill.modeling.packing import forward_logits, model_inputs
from arena_distill.modeling.parallel import Parallel
from arena_distill.training.loop import ClassificationTask, Examples, TrainConfig, micro_batches, optimizer_step, start_run
from arena_distill.workflow.config import PRESET

ARENA_VOTES = REPO / "data" / "sample" / "arena_calibration.parquet"
PRESET_LORA = {"r": 64, "alpha": 128, "dropout": 0.05}
ROWS_PER_STEP, TRAIN_STEPS, PREDICT_ROWS = 8, 4, 64
"""A training step is one GPU's share of the preset's 64-row batch over a node's 8 GPUs; one
warm-up step, then `TRAIN_STEPS` timed. Scoring times `PREDICT_ROWS` rows (about 40k tokens)."""
TEACHER_LAYERS, CHECK_LAYERS, GPTQ_LAYERS = 4, 2, 1
CHECK_VOCAB, GPTQ_REPEATS = 4096, 5
NARROW = {"hidden_size": 512, "intermediate_size": 1024, "vocab_size": 1024}
"""gemma-2-9b's attention (heads, head_dim, soft-cap, scaling) on narrow layers: the flex warm-up's
model compiles the graphs the full model runs, in a fraction of the memory and time."""
CASE_SECONDS = 12.0
"""Seconds one case of a comparison needs at least; with less left it is not started."""
WARMUP_WAIT = 30.0
FP32_TOLERANCE = 1e-3
BF16_ULP = 2.0**-8
"""The gradient check's limits (`gradient_verdict` says why)."""
SOFTCAP_SCALE = 4.0
"""Query and key weights x4, scores x16: a random init's scores (std 1.4 at gemma-2-9b's widths)
reach std 23, where the soft-cap's tanh(score / 50) bends them."""


@dataclass(frozen=True)
class Case:
    """One way of training the student: its attention and micro-batching (`TrainConfig` keys).
    `may_not_fit`: running out of memory is a finding (a note), not a failure."""

    name: str
    attn: str
    settings: Mapping[str, Any]
    may_not_fit: bool = False


def preset_settings() -> dict[str, int]:
    """The preset's lengths and token budgets that the benchmarks follow."""
    preset = yaml.safe_load(PRESET.read_text())
    return {
        "train_length": preset["text"]["train_max_length"],
        "test_length": preset["text"]["test_max_length"],
        "teacher_tokens": preset["training"]["micro_batch_tokens"],
        "student_tokens": preset["student"]["training"]["micro_batch_tokens"],
        "max_tokens": preset["predict"]["max_tokens"],
    }


def student_cases() -> tuple[Case, ...]:
    tokens = preset_settings()["student_tokens"]
    return (
        Case("padded eager, micro-batches of 2 (today)", "eager", {"micro_batch_size": 2}),
        Case(f"packed flex, {tokens:,} tokens (the preset)", "flex_attention", {"packing": True, "micro_batch_tokens": tokens}),
        Case(f"packed eager, {tokens:,} tokens", "eager", {"packing": True, "micro_batch_tokens": tokens}, may_not_fit=True),
        Case(
            f"packed flex, {2 * tokens:,} tokens", "flex_attention", {"packing": True, "micro_batch_tokens": 2 * tokens}, may_not_fit=True
        ),
    )


@functools.lru_cache(maxsize=4)
def arena_lengths(max_length: int) -> np.ndarray:
    """Token lengths of the bundled real arena votes under the preset's word cuts at `max_length`
    (`text.approximate_length`: chars/4 plus EOS, capped); the mirrored order has the same length."""
    rows, _ = read_pairs(ARENA_VOTES, with_labels=False)
    return np.array(approximate_lengths(rows, TextConfig.of(yaml.safe_load(PRESET.read_text())["text"], max_length)))


def real_rows(count: int, max_length: int, vocab: int, seed: int, pad_id: int = 0) -> list[list[int]]:
    """`count` rows of random token ids above `pad_id` (every vocabulary here puts it at the
    bottom), their lengths drawn from `arena_lengths(max_length)`."""
    rng = np.random.default_rng(seed)
    return [rng.integers(pad_id + 1, vocab, int(n)).tolist() for n in rng.choice(arena_lengths(max_length), count)]


@contextlib.contextmanager
def many_compiles() -> Iterator[None]:
    """One process here compiles the FlexAttention graphs of several jobs (scoring, training,
    fp32 gradients; a graph per mask kind, static at the first shape, then for any length): about
    ten, past torch's recompile limit of 8 per function, beyond which flex would run unfused."""
    with torch._dynamo.config.patch(recompile_limit=64):
        yield


def flex_graphs() -> int:
    """Graphs compiled for FlexAttention in this process so far (torch's default limit is 8 per job)."""
    from torch.nn.attention.flex_attention import flex_attention

    return len(torch._dynamo.eval_frame._debug_get_cache_entry_list(flex_attention))


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
    sizes = {"pad_token_id": 0, **config, **({"num_hidden_layers": layers} if layers else {}), **({"vocab_size": vocab} if vocab else {})}
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForSequenceClassification.from_config(
            AutoConfig.for_model(model_type, **sizes, num_labels=3), dtype=dtype, attn_implementation=attn
        )
    return model.eval()


def set_attention(model: torch.nn.Module, attn: str) -> None:
    """Switch the attention kernel of a built model (PEFT's wrapper passes the call through)."""
    model.set_attn_implementation(attn)


def save_random(
    config: Mapping[str, Any], model_type: str, directory: Path, layers: int, device: torch.device, vocab: int | None = None
) -> None:
    """A random-init bf16 checkpoint of a real config cut to `layers` layers (built on `device`)."""
    random_model(config, model_type, device, torch.bfloat16, "eager", layers=layers, vocab=vocab).save_pretrained(directory)


def scratch_dir() -> tempfile.TemporaryDirectory:
    """Memory-backed scratch space where there is one: checkpoints here are written and read once."""
    shm = Path("/dev/shm")
    return tempfile.TemporaryDirectory(dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else None)


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


@contextlib.contextmanager
def measured(entry: dict[str, Any], device: torch.device) -> Iterator[None]:
    """Wall seconds (on a GPU also peak memory) of a block into `entry`; an error is recorded, not raised."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    started = time.perf_counter()
    try:
        yield
        if cuda:
            torch.cuda.synchronize()
    except Exception as error:  # one failed measurement must not stop the others
        entry["error"] = f"{type(error).__name__}: {str(error)[:300]}"
    entry["seconds"] = time.perf_counter() - started
    if cuda:
        entry["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30


def device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def first_rows(lengths: Sequence[int], max_tokens: int) -> list[int]:
    """The rows of the first, second and last token-budgeted batch: a first call on them meets
    every shape class of the whole plan (and compiles there)."""
    batches = token_budget_batches(lengths, max_tokens)
    return sorted({i for batch in (batches[0], batches[min(1, len(batches) - 1)], batches[-1]) for i in batch})


def predict_speed(
    model: torch.nn.Module, shape: flops.Shape, sequences: list[list[int]], peak: float | None, max_tokens: int, repeats: int = 1
) -> tuple[dict[str, Any], np.ndarray | None]:
    """Scoring tokens/s of `sequences` through `predict_logits` in token-budgeted batches, after
    a first call on `first_rows`; returns the entry and the logits."""
    pad_id = model.config.pad_token_id or 0
    lengths = [len(s) for s in sequences]
    batches = token_budget_batches(lengths, max_tokens)
    entry: dict[str, Any] = {
        "rows": len(sequences),
        "real_tokens": sum(lengths),
        "computed_tokens": sum(len(b) * max(lengths[i] for i in b) for b in batches),
    }
    with measured(entry, device_of(model)):
        predict_logits(model, [sequences[i] for i in first_rows(lengths, max_tokens)], pad_id=pad_id, max_tokens=max_tokens)
    entry["first_call_s"] = entry.pop("seconds")
    logits = None
    if "error" not in entry:
        with measured(entry, device_of(model)):
            for _ in range(repeats):
                logits = predict_logits(model, sequences, pad_id=pad_id, max_tokens=max_tokens)
            if not np.isfinite(logits).all():
                raise RuntimeError("non-finite logits")
    if "error" not in entry:
        entry["tokens_per_s"] = repeats * entry["real_tokens"] / entry["seconds"]
        entry["mfu"] = flops.mfu(repeats * flops.rows_flops(lengths, shape.forward_flops), entry["seconds"], peak)
    return entry, (logits if "error" not in entry else None)


def train_speed(
    model: torch.nn.Module, shape: flops.Shape, sequences: list[list[int]], config: TrainConfig, peak: float | None, workdir: Path
) -> dict[str, Any]:
    """LoRA training tokens/s of the project's optimizer step over consecutive `config.batch_size`
    rows, after one warm-up step: real tokens over the tokens its forward passes compute."""
    examples = Examples(sequences, {"label": np.arange(len(sequences)) % 3})
    lengths = examples.lengths
    steps = [list(range(start, start + config.batch_size)) for start in range(0, len(sequences), config.batch_size)]
    passes = [micro for rows in steps[1:] for micro in micro_batches(rows, lengths, config)]
    computed = sum(lengths[p].sum() if config.packing else len(p) * lengths[p].max() for p in passes)
    entry: dict[str, Any] = {
        "real_tokens": int(sum(lengths[rows].sum() for rows in steps[1:])),
        "computed_tokens": int(computed),
        "passes": len(passes),
    }
    run = start_run(
        model, ClassificationTask(), examples, examples, config, pad_id=0, checkpoint_dir=workdir, fingerprint="bench", parallel=Parallel()
    )
    model.train()  # dropout (and checkpointing where on) act in training mode only
    with measured(entry, device_of(model)):
        optimizer_step(run, steps[0])
    entry["first_call_s"] = entry.pop("seconds")
    if "error" not in entry:
        with measured(entry, device_of(model)):
            losses = [optimizer_step(run, rows) for rows in steps[1:]]
            if not all(np.isfinite(losses)):
                raise RuntimeError(f"non-finite loss {losses}")
    run.optimizer.zero_grad(set_to_none=True)
    if "error" not in entry:
        entry["tokens_per_s"] = entry["real_tokens"] / entry["seconds"]
        credited = flops.rows_flops(lengths[len(steps[0]) :], shape.lora_train_flops)
        entry["mfu"] = flops.mfu(credited, entry["seconds"], peak)
    return entry


Emit = Callable[[str, dict[str, Any]], None]


def student_prediction(
    bench: dict[str, Any],
    model: torch.nn.Module,
    peak: float | None,
    emit: Emit,
    left: Callable[[], float],
    lengths: Sequence[int],
    attentions: Sequence[str] = ("eager", "flex_attention"),
    rows: int = PREDICT_ROWS,
) -> None:
    """(a) The same real-length rows scored with each attention at each max length; a later
    attention's logits are compared with the first's."""
    shape = flops.Shape.of(model.config.to_dict())
    for max_length in lengths:
        sequences = real_rows(rows, max_length, model.config.vocab_size, seed=max_length)
        logits: dict[str, np.ndarray | None] = {}
        for attn in attentions:
            entry: dict[str, Any] = {"attn": attn, "max_length": max_length}
            if left() < CASE_SECONDS:
                entry["note"] = "not measured (out of time)"
            else:
                set_attention(model, attn)
                found, logits[attn] = predict_speed(model, shape, sequences, peak, preset_settings()["max_tokens"])
                entry.update(found)
                if attn.startswith("flex"):
                    entry["flex_graphs"] = flex_graphs()
                if attn != attentions[0] and logits.get(attentions[0]) is not None and logits[attn] is not None:
                    entry["max_abs_logit_diff"] = float(np.abs(logits[attn] - logits[attentions[0]]).max())
            bench["student_predict"].append(entry)
            emit("student_predict", entry)


def student_training(
    bench: dict[str, Any],
    model: torch.nn.Module,
    peak: float | None,
    emit: Emit,
    left: Callable[[], float],
    workdir: Path,
    cases: Sequence[Case],
    max_length: int,
    steps: int = TRAIN_STEPS,
) -> None:
    """(b) The same global batches of real-length rows (a warm-up step, then `steps` timed) trained in each way of `cases`."""
    shape = flops.Shape.of(model.config.to_dict())
    sequences = real_rows(ROWS_PER_STEP * (steps + 1), max_length, model.config.vocab_size, seed=1)
    for number, case in enumerate(cases):
        entry: dict[str, Any] = {"case": case.name, "attn": case.attn, "packing": False, **case.settings}
        if left() < CASE_SECONDS:
            entry["note"] = "not measured (out of time)"
        else:
            set_attention(model, case.attn)
            config = TrainConfig(learning_rate=5e-5, batch_size=ROWS_PER_STEP, seed=0, **case.settings)
            entry.update(train_speed(model, shape, sequences, config, peak, workdir / f"student-{number}"))
            if case.attn.startswith("flex"):
                entry["flex_graphs"] = flex_graphs()
            if case.may_not_fit and "OutOfMemoryError" in entry.get("error", ""):
                entry["note"] = "does not fit in the GPU's memory"
                del entry["error"]
        bench["student_train"].append(entry)
        emit("student_train", entry)


def gradients(
    model: torch.nn.Module, batch: Mapping[str, torch.Tensor], labels: torch.Tensor, attn: str, bf16: bool
) -> dict[str, torch.Tensor]:
    """Logits (as "logits") and the gradient of every trainable tensor of one forward/backward pass."""
    set_attention(model, attn)
    device = labels.device
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = forward_logits(model, batch)
    F.cross_entropy(logits, labels, reduction="sum").backward()
    found = {name: p.grad.detach().float().clone() for name, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return {"logits": logits.detach().float(), **found}


def relative_errors(found: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor]) -> dict[str, float]:
    return {name: float((value - reference[name]).norm() / reference[name].norm().clamp_min(1e-30)) for name, value in found.items()}


def gradient_verdict(errors: Mapping[str, float], eager_errors: Mapping[str, float] | None) -> dict[str, Any]:
    """Whether a candidate's gradients and logits equal eager's up to rounding.

    fp32 (`eager_errors` None: the reference is eager itself): within `FP32_TOLERANCE` each.
    Both paths compute the same IEEE fp32 math (flex's dots run 'ieee' unless TF32 is switched
    on, which the project never does), differing in summation order and flex's exp2-based online
    softmax at ~1e-6 relative; 1e-3 leaves three orders of margin, while a leaked packed row, a
    lost soft-cap or a wrong GQA group is off by 1e-1 or more.

    bf16: both paths are measured against the fp32 eager gradient; each tensor's candidate error
    may be at most twice eager's own bf16 error plus one bf16 ulp (2^-8). bf16 keeps 8 bits, and
    where each path rounds differs (flex keeps its scores in fp32 inside the kernel), so a correct
    path lands near eager's error, not at zero; a structural error lands at order 1.
    """
    if eager_errors is None:
        over = {name: value for name, value in errors.items() if not value <= FP32_TOLERANCE}
        limit = f"{FP32_TOLERANCE:g} each"
    else:
        over = {name: value for name, value in errors.items() if not value <= 2 * eager_errors[name] + BF16_ULP}
        limit = "2 x eager's own error + 2^-8 each"
    worst = max(errors, key=errors.get)
    verdict = {
        "max_error": errors[worst],
        "worst": worst,
        "limit": limit,
        "passed": not over,
        "eager_max_error": None if eager_errors is None else max(eager_errors.values()),
    }
    if over:
        verdict["error"] = f"{len(over)} tensor(s) beyond {limit}, e.g. {next(iter(over))} at {over[next(iter(over))]:.2e}"
    return verdict


def gradient_check(
    device: torch.device,
    config: Mapping[str, Any],
    model_type: str,
    layers: int,
    max_length: int,
    tokens: int,
    candidate: str = "flex_attention",
    vocab: int = CHECK_VOCAB,
) -> dict[str, Any]:
    """(c) One packed batch of real-length rows through a `layers`-layer model with LoRA (every
    B matrix random, so every A gets a gradient; no dropout), eager in fp32 as the reference,
    then `candidate` in fp32 and, with the frozen weights cast to bf16 as the student trains,
    eager and `candidate` in bf16 under autocast. The query and key weights are scaled so the
    attention scores reach the soft-cap's bend (a random init's stay where tanh is linear and a
    dropped cap would go unseen)."""
    model = random_model(config, model_type, device, torch.float32, "eager", layers=layers, vocab=vocab)
    for name, param in model.named_parameters():
        if name.endswith(("q_proj.weight", "k_proj.weight")):
            param.data *= SOFTCAP_SCALE
    model = add_lora(model, {**PRESET_LORA, "dropout": 0.0})
    generator = torch.Generator().manual_seed(0)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            param.data = (0.02 * torch.randn(param.shape, generator=generator)).to(device)
    model.eval()
    rows, total = [], 0
    for row in real_rows(4 * tokens // max_length + 8, max_length, vocab, seed=5):
        if total + len(row) <= tokens:
            rows.append(row)
            total += len(row)
    batch = model_inputs(rows, 0, device, packed=True)
    labels = torch.arange(len(rows), device=device) % 3
    check: dict[str, Any] = {"layers": layers, "rows": len(rows), "tokens": total, "candidate": candidate, "dtypes": {}}
    reference = gradients(model, batch, labels, "eager", bf16=False)
    for dtype in ("float32", "bfloat16"):
        bf16 = dtype == "bfloat16"
        if bf16:
            for param in model.parameters():
                if not param.requires_grad:
                    param.data = param.data.to(torch.bfloat16)
        eager = relative_errors(gradients(model, batch, labels, "eager", bf16), reference) if bf16 else None
        try:
            errors = relative_errors(gradients(model, batch, labels, candidate, bf16), reference)
        except Exception as error:  # fp32 flex may lack a kernel at head_dim 256: recorded, and bf16 still decides
            check["dtypes"][dtype] = {"error": f"{type(error).__name__}: {str(error)[:200]}"}
            continue
        check["dtypes"][dtype] = gradient_verdict(errors, eager)
    found = check["dtypes"]
    # fp32 flex may be missing (an error entry); bf16 must be measured, and whatever was measured must pass.
    check["passed"] = "max_error" in found.get("bfloat16", {}) and all(v.get("passed", d == "float32") for d, v in found.items())
    return check


def teacher_comparison(
    bench: dict[str, Any],
    device: torch.device,
    dtype: torch.dtype,
    config: Mapping[str, Any],
    layers: int,
    peak: float | None,
    emit: Emit,
    workdir: Path,
    max_length: int,
    tokens: int,
    rows: int = PREDICT_ROWS,
    steps: int = TRAIN_STEPS,
) -> None:
    """(d) A Llama-shaped stack cut to `layers` layers, NF4 through the project's `load_model`,
    loaded twice: scoring at `max_length`; the logits of `kbit_upcast` on and off before any step
    (fresh LoRA, B = 0: the same weights); then QLoRA training in packs of `tokens`, SDPA and
    checkpointing (the preset's teachers), with each."""
    shape = flops.Shape.of({**config, "num_hidden_layers": layers})
    with scratch_dir() as tmp:
        save_random(config, "llama", Path(tmp), layers, device)
        bases = {
            upcast: load_model(tmp, pad_token_id=0, seed=0, dtype=dtype, load_in_bits=4, device=device, attn_implementation="sdpa")
            for upcast in (True, False)
        }
    vocab, max_tokens = config["vocab_size"], preset_settings()["max_tokens"]
    entry, _ = predict_speed(bases[True], shape, real_rows(rows, max_length, vocab, seed=2), peak, max_tokens)
    entry.update(layers=layers, max_length=max_length)
    bench["teacher_predict"].append(entry)
    emit("teacher_predict", entry)
    models = {}
    for upcast, base in bases.items():
        torch.manual_seed(0)
        models[upcast] = add_lora(base, PRESET_LORA, gradient_checkpointing=True, kbit_upcast=upcast)
    scored = real_rows(16, max_length, vocab, seed=4)
    logits = {
        upcast: predict_logits(model, scored, pad_id=0, max_tokens=max_tokens, bf16=dtype == torch.bfloat16)
        for upcast, model in models.items()
    }
    bench["teacher_logit_diff"] = float(np.abs(logits[True] - logits[False]).max())
    sequences = real_rows(ROWS_PER_STEP * (steps + 1), max_length, vocab, seed=3)
    train = TrainConfig(learning_rate=1e-5, batch_size=ROWS_PER_STEP, packing=True, micro_batch_tokens=tokens, seed=0)
    for upcast, model in models.items():
        entry = {
            "layers": layers,
            "kbit_upcast": upcast,
            "micro_batch_tokens": tokens,
            **train_speed(model, shape, sequences, train, peak, workdir / f"teacher-{upcast}"),
        }
        bench["teacher_train"].append(entry)
        emit("teacher_train", entry)


# -- (e) GPTQ, and the side processes that run beside the workflow ----------------------------------------------------


def sample_tokenizer(rows: int) -> tuple[list[str], Any]:
    """Formatted pairs of the bundled sample and a BPE tokenizer trained on them: GPTQ
    calibrates on real text, as `quantize_student` does."""
    from arena_distill.data.text import format_pair
    from arena_distill.modeling.tokenizer import train_bpe_tokenizer

    frame = pd.read_parquet(REPO / "data/sample/train.parquet").head(rows)
    texts = [format_pair(*map(json.loads, row)) for row in frame[["prompt", "response_a", "response_b"]].itertuples(index=False)]
    return texts, train_bpe_tokenizer(texts, vocab_size=4000)


def export_gptq(config: Mapping[str, Any], layers: int, directory: Path, rows: int, seqlen: int, device: torch.device) -> float:
    """A random-init Gemma-2 of `config` cut to `layers` layers, saved in bf16 (`directory/merged`)
    and exported through the project's GPTQ 8-bit path (`directory/gptq`); returns the export's seconds."""
    from arena_distill.export.quantize import quantize_model

    texts, tokenizer = sample_tokenizer(rows)
    merged = directory / "merged"
    save_random({**config, "pad_token_id": tokenizer.eos_token_id}, "gemma2", merged, layers, device, vocab=len(tokenizer))
    tokenizer.save_pretrained(merged)
    started = time.perf_counter()
    quantize_model(merged, directory / "gptq", method="gptq", bits=8, group_size=128, calibration_texts=texts[:32], model_seqlen=seqlen)
    return time.perf_counter() - started


def gptq_kernels(model: torch.nn.Module) -> list[str]:
    """The GPTQModel layer classes a loaded model runs (MarlinLinear, TritonV2Linear, ...)."""
    return sorted({type(m).__name__ for m in model.modules() if type(m).__module__.startswith("gptqmodel")})


def warm_gptq(out: Path, scratch: Path) -> dict[str, Any]:
    """Export and load a one-layer model at the smoke student's widths, as `quantize_student` and
    `predict` do, so that GPTQModel builds its JIT kernels (CPU packing, then Marlin: minutes on a
    fresh machine) into its cache while the workflow's first jobs run; its GPTQ jobs then wait on
    GPTQModel's build lock, not on a build of their own. Then export the GPTQ benchmark's model into
    `scratch`, so that (e) only loads and scores."""
    from arena_distill.serving.prediction import load_classifier

    device = torch.device("cuda")
    smoke = yaml.safe_load((REPO / SMOKE_CONFIG).read_text())
    started = time.perf_counter()
    with scratch_dir() as tmp:
        export_gptq(smoke["student"]["tiny"], 1, Path(tmp), rows=40, seqlen=256, device=device)
        model, _ = load_classifier(Path(tmp) / "gptq")
        pad_id = model.config.pad_token_id
        predict_logits(model, real_rows(4, 64, model.config.vocab_size, 0, pad_id), pad_id=pad_id, max_tokens=4096)
        entry: dict[str, Any] = {"seconds": time.perf_counter() - started, "kernels": gptq_kernels(model)}
    (out / "warm-gptq.json").write_text(json.dumps(entry, indent=1))
    entry["export_seconds"] = export_gptq(projection.GEMMA2_9B, GPTQ_LAYERS, scratch / "gptq-bench", 400, 1024, device)
    (out / "warm-gptq.json").write_text(json.dumps(entry, indent=1))
    return entry


def gptq_benchmark(out: Path, scratch: Path) -> dict[str, Any]:
    """(e) gemma-2-9b cut to one layer (and a small vocabulary): its bf16 merge against its GPTQ
    8-bit export, each loaded by `load_classifier` with the attention the preset predicts with and
    scored at the test length, as the submission is. The full model's GPTQ speed is its bf16
    speed times this ratio. Exports the model itself when the warm-up did not."""
    from arena_distill.serving.prediction import load_classifier

    settings, device = preset_settings(), torch.device("cuda")
    attn = yaml.safe_load(PRESET.read_text())["predict"]["attn_implementation"]
    directory = scratch / "gptq-bench"
    entry: dict[str, Any] = {"layers": GPTQ_LAYERS, "attn": attn, "max_length": settings["test_length"]}
    warm = out / "warm-gptq.json"
    if not (warm.is_file() and "export_seconds" in json.loads(warm.read_text())):  # the warm-up's export did not finish
        shutil.rmtree(directory, ignore_errors=True)
        entry["export_seconds"] = export_gptq(projection.GEMMA2_9B, GPTQ_LAYERS, directory, rows=400, seqlen=1024, device=device)
    peak = flops.peak_tflops(torch.cuda.get_device_name(0))
    shape = flops.Shape.of({**projection.GEMMA2_9B, "num_hidden_layers": GPTQ_LAYERS})
    logits = {}
    with many_compiles():
        for name in ("bf16", "gptq"):
            model, _ = load_classifier(directory / ("merged" if name == "bf16" else "gptq"), attention=attn)
            vocab, pad_id = model.config.vocab_size, model.config.pad_token_id
            if name == "bf16":  # (a)'s first flex call again: its graph is cached, and every later one is for any length
                replay = real_rows(PREDICT_ROWS, settings["train_length"], vocab, settings["train_length"], pad_id)
                lengths = [len(row) for row in replay]
                predict_logits(
                    model,
                    [replay[i] for i in first_rows(lengths, settings["max_tokens"])],
                    pad_id=pad_id,
                    max_tokens=settings["max_tokens"],
                )
            sequences = real_rows(PREDICT_ROWS, settings["test_length"], vocab, settings["test_length"], pad_id)
            entry[name], logits[name] = predict_speed(model, shape, sequences, peak, settings["max_tokens"], repeats=GPTQ_REPEATS)
            entry[name]["dtype"] = str(next(model.parameters()).dtype)
            if name == "gptq":
                entry["kernels"] = gptq_kernels(model)
            del model
            torch.cuda.empty_cache()
    failed = [f"{name}: {entry[name]['error']}" for name in ("bf16", "gptq") if "error" in entry[name]]
    if failed:
        entry["error"] = "; ".join(failed)
    else:
        entry["max_abs_logit_diff"] = float(np.abs(logits["gptq"] - logits["bf16"]).max())
    (out / "gptq.json").write_text(json.dumps(entry, indent=1))
    return entry


def warm_flex(out: Path, scratch: Path) -> dict[str, Any]:
    """The flex_attention graphs of (a), (b) and (c), compiled beside the workflow into inductor's
    on-disk cache by the same calls on a narrow model with gemma-2-9b's attention (the graphs depend
    on heads, head_dim, dtype and soft-cap, not on widths); the benchmarks then load them instead of
    compiling. Its seconds are FlexAttention's compile time on first use, as a job pays it."""
    settings, device = preset_settings(), torch.device("cuda")
    narrow = {**projection.GEMMA2_9B, **NARROW}
    bench = empty_bench("flex warm-up", None)
    entry: dict[str, Any] = {"seconds": {}}
    ignore, forever = (lambda kind, found: None), (lambda: float("inf"))
    started = time.perf_counter()
    with many_compiles():
        model = random_model(narrow, "gemma2", device, torch.bfloat16, "eager")
        lengths = (settings["train_length"], settings["test_length"])
        student_prediction(bench, model, None, ignore, forever, lengths, ("flex_attention",))
        entry["seconds"]["scoring"] = time.perf_counter() - started
        model = add_lora(model, PRESET_LORA)
        flex_cases = [case for case in student_cases() if case.attn == "flex_attention"]
        student_training(bench, model, None, ignore, forever, scratch / "flex-warm", flex_cases, settings["train_length"])
        entry["seconds"]["training"] = time.perf_counter() - started - entry["seconds"]["scoring"]
        clock = time.perf_counter()
        check = gradient_check(device, narrow, "gemma2", CHECK_LAYERS, settings["train_length"], settings["student_tokens"])
        entry["seconds"]["gradient check"] = time.perf_counter() - clock
    entry["graphs"] = flex_graphs()
    entry["errors"] = [found["error"] for kind in ("student_predict", "student_train") for found in bench[kind] if "error" in found]
    entry["errors"] += [f"{dtype}: {found['error']}" for dtype, found in check["dtypes"].items() if "error" in found]
    (out / "warm-flex.json").write_text(json.dumps(entry, indent=1))
    return entry


SIDE_PROCESSES: dict[str, Callable[[Path, Path], dict[str, Any]]] = {"warm-gptq": warm_gptq, "warm-flex": warm_flex, "gptq": gptq_benchmark}
"""What runs in a process of its own, each writing `<out>/<name>.json`: GPTQModel's kernels and
export state, and the compile workers, stay out of the check's process."""


def start_side(name: str, out: Path, scratch: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "arena_distill.gpu.benchmarks", name, str(out), str(scratch)]
    return start_logged(command, REPO, out / f"{name}.log")


def finish_side(process: subprocess.Popen, out: Path, name: str, timeout: float) -> dict[str, Any]:
    """Wait up to `timeout` s for a side process (killed past it); what it wrote, or its error."""
    code = wait_or_kill(process, timeout)
    if code is None:
        return {"error": f"still running after the wait, stopped; see {name}.log"}
    if code != 0:
        return {"error": f"exit {code}, see {name}.log"}
    return json.loads((out / f"{name}.json").read_text())


# -- the phase ---------------------------------------------------------------------------------------------------------


def say(lines: Sequence[str]) -> None:
    """Report lines as they are measured: a run cut short still shows them."""
    print("\n".join(f"gpu-check: {line}" for line in lines), flush=True)


def empty_bench(gpu: str, peak: float | None) -> dict[str, Any]:
    return {
        "gpu": gpu,
        "peak_tflops": peak,
        "warmups": {},
        "student_predict": [],
        "student_train": [],
        "gradient_check": None,
        "teacher_predict": [],
        "teacher_train": [],
        "teacher_logit_diff": None,
        "gptq": None,
        "not_measured": [],
        "notes": [],
        "errors": [],
    }


@dataclass
class Session:
    """What the measurements of one benchmarks phase share: the numbers so far (written to
    `<out>/benchmarks.json` at each line), the deadline, the side processes, the 9B student
    that (a) and (b) both use."""

    bench: dict[str, Any]
    out: Path
    scratch: Path
    until: float
    sides: dict[str, subprocess.Popen]
    """The side processes; (e) adds its own, so that the check stops it with the others."""
    student: dict[str, torch.nn.Module] = field(default_factory=dict)

    @property
    def peak(self) -> float | None:
        return self.bench["peak_tflops"]

    def left(self) -> float:
        return self.until - time.monotonic()

    def emit(self, kind: str, entry: Mapping[str, Any]) -> None:
        say([tables.bench_row(kind, entry)])
        self.save()

    def save(self) -> None:
        (self.out / "benchmarks.json").write_text(json.dumps(self.bench, indent=1, default=str))

    def student_model(self) -> torch.nn.Module:
        if "model" not in self.student:
            self.student["model"] = random_model(projection.GEMMA2_9B, "gemma2", torch.device("cuda"), torch.bfloat16, "eager")
        return self.student["model"]


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


def bench_errors(bench: Mapping[str, Any]) -> list[str]:
    """What failed: a measurement's error, a gradient check that did not pass, a side process that exited with an error."""
    errors = [f"{kind}: {entry['error']}" for kind in tables.ROWS for entry in bench[kind] if "error" in entry]
    check = bench.get("gradient_check")
    if check and not check["passed"]:
        errors.append("gradient_check: flex and eager gradients differ beyond tolerance (or bf16 was not measured)")
    if (bench.get("gptq") or {}).get("error"):
        errors.append(f"gptq: {bench['gptq']['error']}")
    errors += [f"{name} warm-up: {found['error']}" for name, found in bench["warmups"].items() if found.get("error", "").startswith("exit")]
    return errors + bench["errors"]


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


if __name__ == "__main__" and sys.argv[1:2] and sys.argv[1] in SIDE_PROCESSES:
    SIDE_PROCESSES[sys.argv[1]](Path(sys.argv[2]), Path(sys.argv[3]))
