"""The training loop shared by post-pretraining, teachers and the student.

One loop, two tasks (classification, distillation; `arena_distill.training.tasks`): a task
turns a padded batch into a summed loss; the loop owns everything else, and reads in the
order it happens — set-up (optimizer, schedule, resume), one optimizer step (accumulate
micro-batches, sum gradients across processes, clip, step), then every `eval_every` steps an
evaluation that may keep the best weights and always writes the resumable checkpoint. Its
settings and batch plans: `arena_distill.training.config`.

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import get_cosine_schedule_with_warmup

from arena_distill.modeling.parallel import Parallel, sync_gradients, use_bf16
from arena_distill.training.checkpoints import Checkpoints, TrainState
from arena_distill.training.config import BATCH_PLANS, TrainConfig, micro_batches
from arena_distill.training.curves import Curves
from arena_distill.training.tasks import Examples, Task, classifier_metrics, score

log = logging.getLogger(__name__)


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
    curves_dir: str | Path | None = None,
    on_checkpoint: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train the trainable parameters of `model`; leave the best-val-loss weights in it
    (`config.select == "best"`) or those of the last step.

    `curves_dir` receives the run's TensorBoard curves (`curves.Curves`). `on_checkpoint(step)`
    runs after each checkpoint is written (tests use it to stop a run mid-way). Returns the
    metrics that `metrics.json` records.
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
    curves = Curves(curves_dir if run.parallel.is_main else None, log_every, fresh=state.step == 0)
    try:
        while state.step < run.total_steps:
            # The batch plan is a pure function of (seed, epoch): a resumed run replays it.
            epoch, position = divmod(state.step, run.steps_per_epoch)
            if epoch_plan[0] != epoch:
                epoch_plan = (epoch, run.plan_batches(train_set.lengths, config.batch_size, config.seed, epoch))
            step_loss = optimizer_step(run, epoch_plan[1][position])
            state.losses.append(step_loss)
            interval_losses.append(step_loss)
            last = state.step == run.total_steps
            if run.parallel.is_main and (state.step % log_every == 0 or last):
                log_progress(run, pace, log_every)
            curves.step(state.step, step_loss, run.scheduler.get_last_lr()[0], state.tokens / max(state.train_seconds, 1e-9), last)
            # Every eval_every steps and at the end: validate, keep the best, checkpoint.
            if state.step % config.eval_every == 0 or last:
                evaluate_and_checkpoint(run, float(np.mean(interval_losses)), started)
                curves.validation(state.step, {k.removeprefix("val_"): v for k, v in state.history[-1].items() if k.startswith("val_")})
                interval_losses = []
                if on_checkpoint is not None:
                    on_checkpoint(state.step)
    finally:
        curves.close()
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
