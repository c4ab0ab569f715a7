"""The collectives phase of `make gpu-check`: the project's own `train()` on a one-process group
standing in for a multi-GPU job, so that it issues every collective torchrun would (gradient
all-reduce, float64 totals, checkpoint barriers), each checked to reach the group on the loop's
device (NCCL serves CUDA tensors only); then a resume from its checkpoint, which must load onto
the CPU, code-free, before the optimizer state moves to the parameters. It needs no Snakemake
and no large model, and runs on the CPU with gloo, which is how the test suite keeps it green.
"""

from __future__ import annotations

import contextlib
import math
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from transformers import AutoConfig, AutoModelForSequenceClassification

from arena_distill.gpu.harness import Result
from arena_distill.modeling.models import add_lora
from arena_distill.modeling.parallel import GROUP_TIMEOUT, Parallel
from arena_distill.training.config import TrainConfig
from arena_distill.training.loop import start_run, train
from arena_distill.training.tasks import ClassificationTask, Examples

SMALL_LORA = {"r": 16, "alpha": 32, "dropout": 0.0}


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
