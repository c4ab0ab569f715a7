"""The training loop shared by post-pretraining, teachers and the student.

One loop, two tasks (classification, distillation): a task turns a padded batch into a
summed loss; the loop owns everything else, and reads in the order it
happens — set-up (optimizer, schedule, resume), one optimizer step (accumulate micro-
batches, sum gradients across processes, clip, step), then every `eval_every` steps an
evaluation that may keep the best weights and always writes the resumable checkpoint.

Data parallelism (`arena_distill.modeling.parallel`): under `torchrun` every process takes every
`world`-th row of each global batch, the loss is normalized by the global batch's row count,
and gradients are summed across processes. N processes therefore compute the 1-process
gradient of the same global batch (up to float summation order); the batch plan depends
only on the seed and the epoch, never on the number of processes. Checkpoints and resuming:
`arena_distill.training.checkpoints`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from transformers import get_cosine_schedule_with_warmup

from arena_distill.errors import ConfigError
from arena_distill.modeling.batching import length_grouped_batches, packed_batches, random_batches, token_budget_batches
from arena_distill.modeling.packing import forward_logits, model_inputs
from arena_distill.modeling.parallel import Parallel, sync_gradients, use_bf16
from arena_distill.scoring.metrics import accuracy, logits_log_loss
from arena_distill.training.checkpoints import Checkpoints, TrainState

BATCH_PLANS = {"length_grouped": length_grouped_batches, "random": random_batches}

log = logging.getLogger(__name__)


@dataclass
class Examples:
    """Token sequences and per-row targets (`targets[name][i]` belongs to `ids[i]`)."""

    ids: list[list[int]]
    targets: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def lengths(self) -> np.ndarray:
        """Tokens per row, counted once: every step's micro-batches and every epoch's plan read them."""
        return np.fromiter((len(seq) for seq in self.ids), dtype=np.int64, count=len(self.ids))

    def batch(self, rows: list[int], pad_id: int, device: torch.device, packed: bool = False) -> dict[str, torch.Tensor]:
        """The model inputs of `rows` and their targets: right-padded rows, or one pack
        (`arena_distill.modeling.packing`) whose logits come out in the order of `rows` all the same."""
        batch = model_inputs([self.ids[i] for i in rows], pad_id, device, packed)
        for name, values in self.targets.items():
            batch[name] = torch.as_tensor(values[rows]).to(device)
        return batch


class Task(Protocol):
    """What a training stage computes from a batch; the loop does the rest. Every task trains
    the 3-way classifier, so evaluation is the classifier's: log loss against `label`."""

    def loss(self, model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The loss summed (not averaged) over the batch's rows."""


class ClassificationTask:
    """Cross-entropy of the 3-way head against `label`."""

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = label_smoothing

    def loss(self, model, batch):
        logits = forward_logits(model, batch)
        return F.cross_entropy(logits, batch["label"], reduction="sum", label_smoothing=self.label_smoothing)


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
    packing: bool = False
    """Each micro-batch one sequence of packed rows under `micro_batch_tokens` (no padding);
    the same rows per optimizer step either way."""
    micro_batch_tokens: int = 4096
    """Tokens of one packed micro-batch (replaces `micro_batch_size` when packing)."""
    warmup_ratio: float = 0.05
    warmup_steps: int | None = None
    """Warmup in optimizer steps; when set it replaces `warmup_ratio` (the original: 100)."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    batching: str = "length_grouped"
    """`length_grouped` (similar lengths per batch, less padding) or `random` (the original)."""
    eval_every: int = 100
    log_every: int = 0
    """Steps between progress lines (loss, rate, ETA) and points of the learning curve in
    `metrics.json`; 0 = every tenth of the run."""
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

    def validation_share(self, steps_per_epoch: int, train_tokens: float, val_tokens: float) -> float:
        """Compute of the run's validations as a share of its training compute.

        A validation is a forward pass over `val_tokens` (2 FLOPs per parameter and token);
        training costs 6 per trained token (forward and backward), `train_tokens` per epoch.
        Validating every 100 steps, as the original did, costs about 60 % on top of training
        at the competition's fold sizes; `eval_every` sets the cadence.
        """
        run, _, _ = self.schedule(steps_per_epoch)
        validations = math.ceil(run / self.eval_every)
        return validations * 2 * val_tokens / (6 * run / steps_per_epoch * train_tokens)


def score(
    model: torch.nn.Module,
    examples: Examples,
    pad_id: int,
    device: torch.device,
    parallel: Parallel,
    max_tokens: int,
    bf16: bool,
) -> np.ndarray:
    """Logits (rows × labels, float32) of every row of `examples`, on every process.

    Each process scores every `world`-th row in length-sorted, token-budgeted batches (sorted
    rows pad almost nothing, so scoring does not pack); one sum then gathers the rows (each
    row is zero on all processes but its own), so no process scores alone while the others wait.
    """
    rows = np.arange(parallel.rank, len(examples), parallel.world)
    logits = torch.zeros((len(examples), model.config.num_labels), dtype=torch.float32)
    was_training = model.training
    model.eval()
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for batch_rows in token_budget_batches(examples.lengths[rows], max_tokens):
            chosen = rows[batch_rows]
            logits[chosen] = forward_logits(model, examples.batch(chosen.tolist(), pad_id, device)).cpu()
    model.train(was_training)
    return parallel.sum(logits).cpu().numpy()


def classifier_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Validation loss (log loss) and accuracy of a classifier's logits."""
    return {"loss": logits_log_loss(logits, labels), "accuracy": accuracy(logits, labels)}


@dataclass
class TrainResult:
    metrics: dict
    state: TrainState
    val_logits: np.ndarray | None
    """Validation logits of the weights the run ends with (None when a rerun found the
    run already finished and scored nothing)."""


@dataclass
class Run:
    """Everything one training run holds between steps (built by `start_run`)."""

    model: torch.nn.Module
    task: Task
    train_set: Examples
    val_set: Examples
    config: TrainConfig
    pad_id: int
    parallel: Parallel
    device: torch.device
    bf16: bool
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    checkpoints: Checkpoints
    plan_batches: Callable[..., list[list[int]]]
    steps_per_epoch: int
    total_steps: int
    state: TrainState
    validation_share: float = 0.0
    last_logits: np.ndarray | None = None


def start_run(
    model,
    task: Task,
    train_set: Examples,
    val_set: Examples,
    config: TrainConfig,
    *,
    pad_id: int,
    checkpoint_dir: str | Path,
    fingerprint: str,
    parallel: Parallel,
) -> Run:
    """Optimizer, warmup + cosine schedule and batch plan; resumed from a checkpoint of the same run if any."""
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, betas=config.adam_betas, weight_decay=config.weight_decay)
    plan_batches = BATCH_PLANS[config.batching]
    steps_per_epoch = len(plan_batches(train_set.lengths, config.batch_size, config.seed, 0))
    total_steps, schedule_steps, warmup_steps = config.schedule(steps_per_epoch)
    scheduler = get_cosine_schedule_with_warmup(optimizer, warmup_steps, schedule_steps)
    checkpoints = Checkpoints(checkpoint_dir, fingerprint, parallel)
    state = TrainState()
    if checkpoints.can_resume():
        state = checkpoints.restore(model, optimizer, scheduler)
        state.resumed_from.append(state.step)
        log.info("resumed from step %d of %d (checkpoint %s)", state.step, total_steps, checkpoints.latest)
    share = config.validation_share(steps_per_epoch, float(train_set.lengths.sum()), float(val_set.lengths.sum()))
    run = Run(
        model,
        task,
        train_set,
        val_set,
        config,
        pad_id,
        parallel,
        device,
        use_bf16(config.precision, device),
        params,
        optimizer,
        scheduler,
        checkpoints,
        plan_batches,
        steps_per_epoch,
        total_steps,
        state,
        share,
    )
    passes = f"packs of at most {config.micro_batch_tokens} tokens" if config.packing else f"{config.micro_batch_size} rows"
    log.info(
        "training %d rows (%d per process), %d steps of %d rows (cosine schedule over %d, warmup %d) in forward passes of %s, "
        "%d trainable parameters, %s on %s; validating every %d steps costs %.0f %% of the training compute",
        len(train_set),
        math.ceil(len(train_set) / parallel.world),
        total_steps,
        config.batch_size,
        schedule_steps,
        warmup_steps,
        passes,
        sum(p.numel() for p in params),
        "bf16" if run.bf16 else "fp32",
        device,
        config.eval_every,
        100 * share,
    )
    return run


def optimizer_step(run: Run, global_rows: list[int]) -> float:
    """One optimizer step over a global batch; returns its mean loss over all processes."""
    started = time.perf_counter()
    loss_sum, tokens = accumulate(
        run.model, run.task, run.train_set, global_rows, run.config, run.pad_id, run.device, run.parallel, run.bf16
    )
    if run.parallel.world > 1:
        sync_gradients(run.params, run.parallel)
    torch.nn.utils.clip_grad_norm_(run.params, run.config.max_grad_norm)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    totals = run.parallel.sum(torch.tensor([loss_sum, float(tokens)], dtype=torch.float64))
    run.state.tokens += int(totals[1].item())
    run.state.train_seconds += time.perf_counter() - started
    run.state.step += 1
    return totals[0].item() / len(global_rows)


def evaluate_and_checkpoint(run: Run, train_loss: float, started: float) -> None:
    """Score the validation rows, keep the weights if they are the best so far (`select:
    best`), log, and write the resumable checkpoint."""
    state, config = run.state, run.config
    run.last_logits = score(run.model, run.val_set, run.pad_id, run.device, run.parallel, config.eval_max_tokens, run.bf16)
    val = classifier_metrics(run.last_logits, run.val_set.targets["label"])
    if val["loss"] < state.best_loss:
        state.best_loss, state.best_step = val["loss"], state.step
        if config.select == "best":
            run.checkpoints.save_best(run.model, run.last_logits)
    state.seconds = time.perf_counter() - started
    record = {"step": state.step, "train_loss": train_loss, **{f"val_{k}": v for k, v in val.items()}}
    state.history.append(record)
    log.info(
        "step %d/%d epoch %.2f train_loss %.4f %s best %.4f@%d %.0f tok/s",
        state.step,
        run.total_steps,
        state.step / run.steps_per_epoch,
        train_loss,
        " ".join(f"val_{k} {v:.4f}" for k, v in val.items()),
        state.best_loss,
        state.best_step,
        state.tokens / max(state.train_seconds, 1e-9),
    )
    run.checkpoints.save(run.model, run.optimizer, run.scheduler, state)


@dataclass(frozen=True)
class Pace:
    """Where this process's share of the run started (a resumed run's earlier steps do not
    count towards its rate)."""

    step: int
    time: float


def log_progress(run: Run, pace: Pace, window: int) -> None:
    """One line a user can `tail -f`: step, share done, recent loss, learning rate, rate, ETA."""
    state = run.state
    elapsed = time.perf_counter() - pace.time
    seconds_per_step = elapsed / max(1, state.step - pace.step)
    log.info(
        "step %d/%d (%d %%) train_loss %.4f lr %.2e %.0f tok/s elapsed %s eta %s",
        state.step,
        run.total_steps,
        100 * state.step // run.total_steps,
        float(np.mean(state.losses[-window:])),
        run.scheduler.get_last_lr()[0],
        state.tokens / max(state.train_seconds, 1e-9),
        clock(elapsed),
        clock(seconds_per_step * (run.total_steps - state.step)),
    )


def clock(seconds: float) -> str:
    """h:mm:ss, as a log line shows a duration."""
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


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
    run = start_run(
        model,
        task,
        train_set,
        val_set,
        config,
        pad_id=pad_id,
        checkpoint_dir=checkpoint_dir,
        fingerprint=fingerprint,
        parallel=parallel or Parallel(),
    )
    state = run.state
    model.train()
    started = time.perf_counter() - state.seconds
    epoch_plan: tuple[int, list[list[int]]] = (-1, [])
    interval_losses: list[float] = []
    log_every = config.log_every or max(1, run.total_steps // 10)
    pace = Pace(state.step, time.perf_counter())
    while state.step < run.total_steps:
        # The batch plan is a pure function of (seed, epoch): a resumed run replays it.
        epoch, position = divmod(state.step, run.steps_per_epoch)
        if epoch_plan[0] != epoch:
            epoch_plan = (epoch, run.plan_batches(train_set.lengths, config.batch_size, config.seed, epoch))
        step_loss = optimizer_step(run, epoch_plan[1][position])
        state.losses.append(step_loss)
        interval_losses.append(step_loss)
        if run.parallel.is_main and (state.step % log_every == 0 or state.step == run.total_steps):
            log_progress(run, pace, log_every)
        # Every eval_every steps and at the end: validate, keep the best, checkpoint.
        if state.step % config.eval_every == 0 or state.step == run.total_steps:
            evaluate_and_checkpoint(run, float(np.mean(interval_losses)), started)
            interval_losses = []
            if on_checkpoint is not None:
                on_checkpoint(state.step)
    # The validation logits of the weights kept: nothing is scored twice.
    kept_logits = run.checkpoints.load_best(model) if config.select == "best" else run.last_logits
    metrics = {**summarize_run(state, run.steps_per_epoch, config.select, log_every), "validation_share": run.validation_share}
    return TrainResult(metrics, state, kept_logits)


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
    add up to the gradient of the global batch's mean loss whatever the split, padded or packed.
    """
    rows = global_rows[parallel.rank :: parallel.world]
    loss_sum, tokens = 0.0, 0
    for micro in micro_batches(rows, examples.lengths, config):
        batch = examples.batch(micro, pad_id, device, config.packing)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = task.loss(model, batch)
        (loss / len(global_rows)).backward()
        loss_sum += loss.item()
        tokens += int(examples.lengths[micro].sum())
    return loss_sum, tokens


def micro_batches(rows: list[int], lengths: np.ndarray, config: TrainConfig) -> list[list[int]]:
    """One process's rows of a step as forward passes: `micro_batch_size` rows in order, or
    packs of at most `micro_batch_tokens` tokens."""
    if config.packing:
        return [[rows[i] for i in pack] for pack in packed_batches(lengths[rows], config.micro_batch_tokens)]
    return [rows[start : start + config.micro_batch_size] for start in range(0, len(rows), config.micro_batch_size)]


def learning_curve(losses: list[float], every: int) -> list[dict[str, float]]:
    """The mean training loss over the `every` steps up to each `every`-th step and the last:
    the curve the report plots, a few dozen points whatever the run's length."""
    ends = sorted({*range(every, len(losses) + 1, every), len(losses)} - {0})
    return [{"step": end, "train_loss": float(np.mean(losses[max(0, end - every) : end]))} for end in ends]


def summarize_run(state: TrainState, steps_per_epoch: int, select: str = "best", log_every: int = 1) -> dict:
    """The run's metrics: validation numbers of the weights kept, loss at start and end, the
    learning curve, speed."""
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
        "train_curve": learning_curve(state.losses, log_every),
    }
