"""Training benchmarks: the project's loop against a plain PyTorch loop of the same model,
batches and precision, other parametrizations (full fine-tuning, LoRA ranks, the whole batch
per pass) with the loss each reaches, and the loop with its decoder layers compiled.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from arena_distill.bench.summary import Result
from arena_distill.bench.tiny_default import Setup, classifier
from arena_distill.modeling.batching import length_grouped_batches, pad_right
from arena_distill.modeling.models import compile_layers
from arena_distill.training.config import TrainConfig
from arena_distill.training.loop import train
from arena_distill.training.tasks import ClassificationTask, Examples


def plain_loop(
    model, examples: Examples, batches: list[list[int]], pad_id: int, learning_rate: float, micro_batch_size: int
) -> tuple[float, int, float]:
    """The textbook loop: pad, forward, cross-entropy, backward (accumulated over micro-batches),
    clip, AdamW. (seconds, tokens, mean loss of the last batch)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=learning_rate)
    model.train()
    tokens, loss = 0, math.nan
    started = time.perf_counter()
    for rows in batches:
        loss = 0.0
        for start in range(0, len(rows), micro_batch_size):
            micro = rows[start : start + micro_batch_size]
            input_ids, attention_mask = pad_right([examples.ids[i] for i in micro], pad_id)
            labels = torch.as_tensor(examples.targets["label"][micro])
            logits = model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
            loss_value = F.cross_entropy(logits, labels, reduction="sum") / len(rows)
            loss_value.backward()
            tokens += int(attention_mask.sum())
            loss += float(loss_value)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - started, tokens, loss


def training_bench(setup: Setup, examples: Examples, base: Path, tokenizer, steps: int, workdir: Path) -> list[Result]:
    """The project's loop and the plain loop on the same batches, then other parametrizations."""
    pad = tokenizer.pad_token_id
    first = length_grouped_batches(examples.lengths, setup.batch_size, seed=0, epoch=0)[:steps]
    rows = sorted({i for batch in first for i in batch})
    subset = Examples([examples.ids[i] for i in rows], {"label": examples.targets["label"][rows]})
    # The project's loop plans these very batches from the subset (same planner, seed and epoch).
    batches = length_grouped_batches(subset.lengths, setup.batch_size, seed=0, epoch=0)
    micro = setup.micro_batch_size
    plain_loop(classifier(base, tokenizer, setup.lora), subset, batches[:1], pad, setup.learning_rate, micro)  # warm-up, untimed
    # name -> (LoRA, rows per forward pass)
    variants = {
        "default LoRA": (setup.lora, micro),
        "full fine-tuning": (None, micro),
        "LoRA r 64 with embeddings (full rank)": ({**setup.lora, "r": 64, "alpha": 128}, micro),
        "LoRA r 8 without embeddings": ({**setup.lora, "r": 8, "alpha": 16, "modules_to_save": []}, micro),
        f"default LoRA, the whole batch of {setup.batch_size} per pass": (setup.lora, setup.batch_size),
    }
    config = TrainConfig(
        learning_rate=setup.learning_rate,
        epochs=1,
        batch_size=setup.batch_size,
        micro_batch_size=micro,
        eval_every=10**6,
        warmup_ratio=0.0,
        seed=0,
    )
    val = Examples(subset.ids[: setup.batch_size], {"label": subset.targets["label"][: setup.batch_size]})
    # Two interleaved rounds, the faster of each kept: a busy core in one round does not decide the ratio.
    plain: dict[str, tuple[float, float]] = {}
    speed, project = 0.0, {}
    for round_ in range(2):
        for name, (lora, rows_per_pass) in variants.items():
            seconds, tokens, loss = plain_loop(classifier(base, tokenizer, lora), subset, batches, pad, setup.learning_rate, rows_per_pass)
            plain[name] = (max(tokens / seconds, plain.get(name, (0.0,))[0]), loss)
        project = train(
            classifier(base, tokenizer, setup.lora),
            ClassificationTask(),
            subset,
            val,
            config,
            pad_id=pad,
            checkpoint_dir=workdir / f"checkpoints{round_}",
            fingerprint="bench",
        ).metrics
        speed = max(speed, project["tokens"] / project["train_seconds"])
    baseline, (reference, _) = "plain loop, default LoRA", plain["default LoRA"]
    results = [
        Result(
            "training: project loop, default LoRA",
            speed,
            "tokens/s",
            baseline,
            speed / reference,
            f"{project['steps']} steps of {setup.batch_size} rows, {micro} per pass; loss {project['train_loss_last']:.3f}",
        ),
        compiled_training(base, tokenizer, setup, subset, val, config, workdir, speed),
    ]
    for name, (value, loss) in plain.items():
        results.append(
            Result(
                f"training: plain loop, {name}",
                value,
                "tokens/s",
                "" if name == "default LoRA" else baseline,
                None if name == "default LoRA" else value / reference,
                f"loss {loss:.3f} after the same steps",
            )
        )
    return results


def compiled_training(
    base: Path, tokenizer, setup: Setup, subset: Examples, val: Examples, config: TrainConfig, workdir: Path, eager_speed: float
) -> Result:
    """The project loop with its decoder layers compiled (`training.compile`), against the
    eager loop: a first run compiles every batch shape it meets, a second on the same model
    gives the compiled speed."""
    model = classifier(base, tokenizer, setup.lora)
    compile_layers(model)
    runs = [
        train(
            model,
            ClassificationTask(),
            subset,
            val,
            config,
            pad_id=tokenizer.pad_token_id,
            checkpoint_dir=workdir / f"compiled{i}",
            fingerprint="bench",
        ).metrics
        for i in range(2)
    ]
    speed = runs[1]["tokens"] / runs[1]["train_seconds"]
    return Result(
        "training: project loop, decoder layers compiled",
        speed,
        "tokens/s",
        "project loop, default LoRA",
        speed / eager_speed,
        f"after a first run that compiled for {runs[0]['train_seconds']:.0f} s",
    )
