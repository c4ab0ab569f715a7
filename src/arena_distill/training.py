"""The training loop shared by post-pretraining, teachers and the student.

One loop, two tasks (classification, distillation): a task turns a padded batch into a summed loss and evaluation sums;
the loop owns everything else — optimizer, cosine schedule with warmup, gradient
accumulation, mixed precision, data parallelism, evaluation with best-checkpoint keeping,
and resumable checkpoints.

Data parallelism: under `torchrun` every process takes every `world`-th row of each global
batch, the loss is normalized by the global batch's row count, and gradients are summed
across processes with one `all_reduce`. N processes therefore compute the 1-process
gradient of the same global batch (up to float summation order); the batch plan depends
only on the seed and the epoch, never on the number of processes.

Resuming: after every evaluation the trainable weights, optimizer, scheduler, every
process's RNG state and the step are saved under the checkpoint directory, tagged with a
fingerprint of the run (data, base model, settings). A rerun with the same fingerprint
continues from that step — the batch plan is a pure function of (seed, epoch), so the
data position is the step itself. A different fingerprint starts over.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm
from transformers import get_cosine_schedule_with_warmup

from arena_distill.batching import length_grouped_batches, pad_right, random_batches, token_budget_batches
from arena_distill.errors import ConfigError
from arena_distill.io import atomic_path

BATCH_PLANS = {"length_grouped": length_grouped_batches, "random": random_batches}

log = logging.getLogger(__name__)


@dataclass
class Examples:
    """Token sequences and per-row targets (`targets[name][i]` belongs to `ids[i]`)."""

    ids: list[list[int]]
    targets: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(seq) for seq in self.ids), dtype=np.int64, count=len(self.ids))

    def batch(self, rows: list[int], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = pad_right([self.ids[i] for i in rows], pad_id)
        batch = {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}
        for name, values in self.targets.items():
            batch[name] = torch.as_tensor(values[rows]).to(device)
        return batch


class Task(Protocol):
    """What a training stage computes from a batch; the loop does the rest."""

    def loss(self, model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The loss summed (not averaged) over the batch's rows."""

    def eval_sums(self, model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """Additive evaluation statistics of the batch; must include `loss` and `rows`."""

    def summarize(self, sums: Mapping[str, float]) -> dict[str, float]:
        """Metrics from summed statistics; must include `loss` (lower is better)."""


class ClassificationTask:
    """Cross-entropy of the 3-way head against `label`; reports log loss and accuracy."""

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = label_smoothing

    def loss(self, model, batch):
        logits = forward_logits(model, batch)
        return F.cross_entropy(logits, batch["label"], reduction="sum", label_smoothing=self.label_smoothing)

    def eval_sums(self, model, batch):
        logits = forward_logits(model, batch)
        nll = F.cross_entropy(logits, batch["label"], reduction="sum")
        correct = (logits.argmax(dim=-1) == batch["label"]).sum()
        return {"loss": nll.item(), "correct": correct.item(), "rows": len(logits)}

    def summarize(self, sums):
        return {"loss": sums["loss"] / sums["rows"], "accuracy": sums["correct"] / sums["rows"]}


def forward_logits(model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Classifier logits in float32 (the head may run in bf16 under autocast)."""
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()


@dataclass(frozen=True)
class TrainConfig:
    """Optimization settings of one training run (a config block plus the model's own keys)."""

    learning_rate: float
    epochs: float = 1.0
    schedule_epochs: float | None = None
    """Length of the cosine schedule in epochs; None = `epochs`. The original's teachers stop
    after 1 epoch of a 2-epoch schedule (the LR is still at half its peak)."""
    select: str = "best"
    """Weights the run ends with: `best` validation loss or `last` step."""
    batch_size: int = 32
    micro_batch_size: int = 32
    warmup_ratio: float = 0.05
    warmup_steps: int | None = None
    """Warmup in optimizer steps; when set it replaces `warmup_ratio` (the original: 100)."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    batching: str = "length_grouped"
    """`length_grouped` (similar lengths per batch, less padding) or `random` (the original)."""
    eval_every: int = 100
    eval_max_tokens: int = 65536
    precision: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "adam_betas", tuple(self.adam_betas))
        if self.select not in ("best", "last"):
            raise ConfigError(f"select must be best or last, got {self.select!r}", key="select")
        if self.batching not in BATCH_PLANS:
            raise ConfigError(f"batching must be one of {sorted(BATCH_PLANS)}, got {self.batching!r}", key="batching")

    def schedule(self, steps_per_epoch: int) -> tuple[int, int, int]:
        """(steps to run, steps of the cosine schedule, warmup steps)."""
        run = max(1, math.ceil(self.epochs * steps_per_epoch))
        length = max(run, math.ceil((self.schedule_epochs or self.epochs) * steps_per_epoch))
        warmup = self.warmup_steps if self.warmup_steps is not None else round(self.warmup_ratio * length)
        return run, length, min(warmup, length)


@dataclass
class TrainState:
    step: int = 0
    best_loss: float = math.inf
    best_step: int = -1
    losses: list[float] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    tokens: int = 0
    train_seconds: float = 0.0
    seconds: float = 0.0
    resumed_from: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Parallel:
    """This process's place in a `torchrun` job (rank 0 of 1 without one)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "Parallel":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return cls(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self) -> torch.device:
        if torch.cuda.is_available():
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def use_bf16(precision: str, device: torch.device) -> bool:
    """bf16 autocast where it is native (CUDA with bf16 support); fp32 elsewhere."""
    if precision == "fp32":
        return False
    supported = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "bf16" and not supported:
        log.warning("precision bf16 requested but %s has no native bf16: training in fp32", device)
    return supported


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().to("cpu", copy=True).contiguous() for name, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


class Checkpoints:
    """The resumable state of one run under `root`: `latest/` plus `best.safetensors`."""

    def __init__(self, root: str | Path, fingerprint: str, parallel: Parallel):
        self.root = Path(root)
        self.fingerprint = fingerprint
        self.parallel = parallel
        self.latest = self.root / "latest"
        self.previous = self.root / "previous"
        self.best = self.root / "best.safetensors"
        if parallel.is_main and self.previous.is_dir() and not self.latest.exists():
            os.replace(self.previous, self.latest)
        parallel.barrier()

    def can_resume(self) -> bool:
        state = self.latest / "state.json"
        if not state.is_file():
            return False
        if json.loads(state.read_text())["fingerprint"] != self.fingerprint:
            log.info("checkpoint in %s belongs to another run (inputs or settings changed): starting over", self.root)
            return False
        return (self.latest / f"rng-{self.parallel.rank}.pt").is_file()

    def save(self, model, optimizer, scheduler, state: TrainState) -> None:
        staging = self.root / ".staging"
        if self.parallel.is_main:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        self.parallel.barrier()
        torch.save(rng_state(), staging / f"rng-{self.parallel.rank}.pt")
        self.parallel.barrier()
        if self.parallel.is_main:
            save_file(trainable_state(model), staging / "trainable.safetensors")
            torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, staging / "optim.pt")
            (staging / "state.json").write_text(json.dumps({"fingerprint": self.fingerprint, **asdict(state)}))
            # Two renames: a kill at any moment leaves `latest` or `previous` complete.
            if self.latest.exists():
                os.replace(self.latest, self.previous)
            os.replace(staging, self.latest)
            shutil.rmtree(self.previous, ignore_errors=True)
        self.parallel.barrier()

    def restore(self, model, optimizer, scheduler) -> TrainState:
        load_trainable_state(model, load_file(self.latest / "trainable.safetensors"))
        optim = torch.load(self.latest / "optim.pt", weights_only=False)
        optimizer.load_state_dict(optim["optimizer"])
        scheduler.load_state_dict(optim["scheduler"])
        set_rng_state(torch.load(self.latest / f"rng-{self.parallel.rank}.pt", weights_only=False))
        saved = json.loads((self.latest / "state.json").read_text())
        saved.pop("fingerprint")
        return TrainState(**saved)

    def save_best(self, model) -> None:
        if self.parallel.is_main:
            with atomic_path(self.best) as tmp:
                save_file(trainable_state(model), tmp)

    def load_best(self, model) -> None:
        load_trainable_state(model, load_file(self.best))


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def evaluate(
    model: torch.nn.Module,
    task: Task,
    examples: Examples,
    pad_id: int,
    device: torch.device,
    parallel: Parallel,
    max_tokens: int,
    bf16: bool,
) -> dict[str, float]:
    """The task's metrics over all `examples`, each process scoring every `world`-th row."""
    rows = np.arange(parallel.rank, len(examples), parallel.world)
    totals: dict[str, float] = {}
    was_training = model.training
    model.eval()
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for batch_rows in token_budget_batches(examples.lengths[rows], max_tokens):
            sums = task.eval_sums(model, examples.batch(rows[batch_rows].tolist(), pad_id, device))
            for key, value in sums.items():
                totals[key] = totals.get(key, 0.0) + float(value)
    model.train(was_training)
    keys = sorted(totals)
    reduced = parallel.sum(torch.tensor([totals[k] for k in keys], dtype=torch.float64))
    return task.summarize(dict(zip(keys, reduced.tolist())))


@dataclass
class TrainResult:
    metrics: dict
    state: TrainState


def train(
    model: torch.nn.Module,
    task: Task,
    train_set: Examples,
    val_set: Examples,
    config: TrainConfig,
    *,
    pad_id: int,
    checkpoint_dir: str | Path,
    fingerprint: str,
    parallel: Parallel | None = None,
    on_checkpoint: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train the trainable parameters of `model`; leave the best-val-loss weights in it
    (`config.select == "best"`) or those of the last step.

    `on_checkpoint(step)` runs after each checkpoint is written (tests use it to stop a
    run mid-way). Returns the metrics that `metrics.json` records.
    """
    parallel = parallel or Parallel()
    device = next(model.parameters()).device
    bf16 = use_bf16(config.precision, device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, betas=config.adam_betas, weight_decay=config.weight_decay)
    lengths = train_set.lengths
    plan_batches = BATCH_PLANS[config.batching]
    steps_per_epoch = len(plan_batches(lengths, config.batch_size, config.seed, 0))
    total_steps, schedule_steps, warmup_steps = config.schedule(steps_per_epoch)
    scheduler = get_cosine_schedule_with_warmup(optimizer, warmup_steps, schedule_steps)
    checkpoints = Checkpoints(checkpoint_dir, fingerprint, parallel)
    state = TrainState()
    if checkpoints.can_resume():
        state = checkpoints.restore(model, optimizer, scheduler)
        state.resumed_from.append(state.step)
        log.info("resumed from step %d of %d (checkpoint %s)", state.step, total_steps, checkpoints.latest)
    log.info(
        "training %d rows (%d per process), %d steps of %d rows, %d trainable parameters, %s on %s",
        len(train_set),
        math.ceil(len(train_set) / parallel.world),
        total_steps,
        config.batch_size,
        sum(p.numel() for p in params),
        "bf16" if bf16 else "fp32",
        device,
    )
    model.train()
    started = time.perf_counter() - state.seconds
    epoch_plan: tuple[int, list[list[int]]] = (-1, [])
    interval_losses: list[float] = []
    progress = tqdm(total=total_steps, initial=state.step, disable=not parallel.is_main, desc="train", mininterval=5)
    while state.step < total_steps:
        epoch, position = divmod(state.step, steps_per_epoch)
        if epoch_plan[0] != epoch:
            epoch_plan = (epoch, plan_batches(lengths, config.batch_size, config.seed, epoch))
        global_rows = epoch_plan[1][position]
        step_started = time.perf_counter()
        loss_sum, tokens = accumulate(model, task, train_set, global_rows, config, pad_id, device, parallel, bf16)
        if parallel.world > 1:
            sync_gradients(params, parallel)
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        totals = parallel.sum(torch.tensor([loss_sum, float(tokens)], dtype=torch.float64))
        step_loss = totals[0].item() / len(global_rows)
        state.losses.append(step_loss)
        interval_losses.append(step_loss)
        state.tokens += int(totals[1].item())
        state.train_seconds += time.perf_counter() - step_started
        state.step += 1
        progress.update(1)
        progress.set_postfix(loss=f"{step_loss:.4f}", refresh=False)
        if state.step % config.eval_every == 0 or state.step == total_steps:
            val = evaluate(model, task, val_set, pad_id, device, parallel, config.eval_max_tokens, bf16)
            if val["loss"] < state.best_loss:
                state.best_loss, state.best_step = val["loss"], state.step
                if config.select == "best":
                    checkpoints.save_best(model)
            state.seconds = time.perf_counter() - started
            record = {"step": state.step, "train_loss": float(np.mean(interval_losses)), **{f"val_{k}": v for k, v in val.items()}}
            state.history.append(record)
            interval_losses = []
            log.info(
                "step %d/%d epoch %.2f train_loss %.4f %s best %.4f@%d %.0f tok/s",
                state.step,
                total_steps,
                state.step / steps_per_epoch,
                record["train_loss"],
                " ".join(f"val_{k} {v:.4f}" for k, v in val.items()),
                state.best_loss,
                state.best_step,
                state.tokens / max(state.train_seconds, 1e-9),
            )
            checkpoints.save(model, optimizer, scheduler, state)
            if on_checkpoint is not None:
                on_checkpoint(state.step)
    progress.close()
    if config.select == "best":
        checkpoints.load_best(model)
    return TrainResult(metrics=summarize_run(state, steps_per_epoch, config.select), state=state)


def accumulate(
    model: torch.nn.Module,
    task: Task,
    examples: Examples,
    global_rows: list[int],
    config: TrainConfig,
    pad_id: int,
    device: torch.device,
    parallel: Parallel,
    bf16: bool,
) -> tuple[float, int]:
    """Forward/backward this process's share of one global batch in micro-batches.

    Each micro-batch's summed loss is divided by the global row count, so the gradients
    add up to the gradient of the global batch's mean loss whatever the split.
    """
    rows = global_rows[parallel.rank :: parallel.world]
    loss_sum, tokens = 0.0, 0
    for start in range(0, len(rows), config.micro_batch_size):
        batch = examples.batch(rows[start : start + config.micro_batch_size], pad_id, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = task.loss(model, batch)
        (loss / len(global_rows)).backward()
        loss_sum += loss.item()
        tokens += int(batch["attention_mask"].sum())
    return loss_sum, tokens


def sync_gradients(params: list[torch.nn.Parameter], parallel: Parallel) -> None:
    """Sum gradients over processes in one flat buffer (a process with no rows adds zeros)."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = parallel.sum(torch.cat([g.reshape(-1) for g in grads]))
    offset = 0
    for p, g in zip(params, grads):
        p.grad = flat[offset : offset + g.numel()].view_as(g).clone()
        offset += g.numel()


def summarize_run(state: TrainState, steps_per_epoch: int, select: str = "best") -> dict:
    """The run's metrics: validation numbers of the weights kept, loss at start and end, speed."""
    window = max(1, len(state.losses) // 20)
    kept_step = state.best_step if select == "best" else state.step
    kept = next((h for h in state.history if h["step"] == kept_step), {})
    return {
        **{key: value for key, value in kept.items() if key.startswith("val_")},
        "select": select,
        "kept_step": kept_step,
        "best_step": state.best_step,
        "steps": state.step,
        "epochs": state.step / steps_per_epoch,
        "train_loss_first": float(np.mean(state.losses[:window])),
        "train_loss_last": float(np.mean(state.losses[-window:])),
        "seconds": state.seconds,
        "train_seconds": state.train_seconds,
        "tokens": state.tokens,
        "tokens_per_second": state.tokens / max(state.train_seconds, 1e-9),
        "resumed_from": state.resumed_from,
        "history": state.history,
    }


def discard_checkpoints(checkpoint_dir: str | Path, parallel: Parallel) -> None:
    """Remove a finished run's checkpoints (called once its outputs are written)."""
    if parallel.is_main:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
