"""The heavy pipeline stages as plain functions of paths and config slices.

Each function is what one Snakemake job does. They take only JSON-able arguments so the
launcher can hand them to `torchrun` workers unchanged; under several processes every
rank trains, and rank 0 alone writes outputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from peft import PeftModel
from scipy.special import softmax

from arena_distill.inference import predict_logits
from arena_distill.io import atomic_path, read_json, write_json, write_parquet
from arena_distill.metrics import accuracy, log_loss, logits_log_loss, prior_log_loss
from arena_distill.models import Task, add_lora, for_inference, is_adapter, load_model, load_tokenizer, save_model
from arena_distill.logits import LOGIT_COLUMNS, logits_frame, shard_of
from arena_distill.pairs import encode_rows, fold_rows, unswap_probs, with_swaps
from arena_distill.text import PairEncoder, TextConfig
from arena_distill.training import (
    CausalLMTask,
    ClassificationTask,
    Examples,
    Parallel,
    TrainConfig,
    discard_checkpoints,
    train,
    use_bf16,
)

log = logging.getLogger(__name__)

TRAIN_KEYS = ("learning_rate", "epochs", "batch_size", "micro_batch_size", "warmup_ratio", "weight_decay",
              "max_grad_norm", "eval_every", "eval_max_tokens", "precision", "seed")


def train_config(training: Mapping[str, Any], spec: Mapping[str, Any]) -> TrainConfig:
    """The shared `training` block under a model's own keys (learning rate, epochs, seed,
    and its `training` overrides)."""
    merged = {**training, **spec.get("training", {}), **{k: v for k, v in spec.items() if k in TRAIN_KEYS}}
    return TrainConfig(**{k: v for k, v in merged.items() if k in TRAIN_KEYS})


def text_config(text: Mapping[str, Any], max_length: int) -> TextConfig:
    return TextConfig(
        max_length=max_length,
        prompt_words=text["prompt_words"],
        response_words=text["response_words"],
        prompt_tokens=text["prompt_tokens"],
    )


def fingerprint(*parts: Any) -> str:
    """A digest of a run's settings, data and base model, to tell whether a checkpoint is ours."""
    digest = hashlib.sha1()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(np.ascontiguousarray(part).tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def model_fingerprint(base: Mapping[str, Any]) -> list:
    """Names, sizes and mtimes of a model directory's files (the path itself for a hub id)."""
    entries = []
    for key in ("path", "post_pretrained"):
        path = base.get(key)
        if path and Path(path).is_dir():
            entries += [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(Path(path).iterdir()) if f.is_file()]
        else:
            entries.append(path)
    return entries


def examples_digest(examples: Examples) -> np.ndarray:
    tokens = np.concatenate([np.asarray(seq, dtype=np.int64) for seq in examples.ids] + [np.zeros(0, np.int64)])
    parts = [tokens, examples.lengths] + [np.asarray(v) for _, v in sorted(examples.targets.items())]
    return np.frombuffer(hashlib.sha1(b"".join(p.tobytes() for p in parts)).digest(), dtype=np.uint8)


def resolve_base(base: Mapping[str, Any]) -> tuple[str, str | None]:
    """(model path, adapter to merge) of a base `{path, post_pretrained}`.

    `post_pretrained`, when given, is either a post-pretrained model directory (used
    instead of `path`) or a PEFT adapter trained on `path` (merged into it on load).
    """
    given = base.get("post_pretrained")
    if not given:
        return base["path"], None
    return (base["path"], given) if is_adapter(given) else (given, None)


def load_base(base: Mapping[str, Any], task: Task, spec: Mapping[str, Any], device: torch.device, bf16: bool):
    """Tokenizer and model of a base as the model `spec` asks (k-bit or not)."""
    path, adapter = resolve_base(base)
    tokenizer = load_tokenizer(path)
    model = load_model(
        path,
        task=task,
        pad_token_id=tokenizer.pad_token_id,
        seed=spec.get("seed", 0),
        dtype=torch.bfloat16 if bf16 else torch.float32,
        load_in_bits=spec.get("load_in_bits"),
        device=device,
        base_adapter=adapter,
    )
    return tokenizer, model


def post_pretrain(
    *,
    base: Mapping[str, Any],
    corpus: str,
    spec: Mapping[str, Any],
    settings: Mapping[str, Any],
    training: Mapping[str, Any],
    out_model: str,
    out_adapter: str,
    out_metrics: str,
    checkpoint_dir: str,
) -> None:
    """Causal-LM LoRA on the UT corpus, merged into the base → a base for later stages.

    Texts are joined with EOS and cut into blocks of `settings.max_length` tokens (the
    usual LM packing); `settings.val_fraction` of the blocks measure the loss.
    """
    parallel = Parallel.from_env()
    device = parallel.device()
    config = train_config(training, {"seed": spec.get("seed", 0), **settings, "training": spec.get("training", {})})
    bf16 = use_bf16(config.precision, device)
    tokenizer, model = load_base(base, "causal_lm", spec, device, bf16)
    texts = pd.read_parquet(corpus)["text"].tolist()
    blocks = pack_blocks(tokenizer, texts, settings["max_length"])
    order = np.random.default_rng(config.seed).permutation(len(blocks))
    n_val = max(1, round(settings.get("val_fraction", 0.05) * len(blocks)))
    val_set = Examples([blocks[i] for i in order[:n_val]])
    train_set = Examples([blocks[i] for i in order[n_val:]])
    log.info("post-pretraining on %d texts packed into %d blocks of %d tokens (%d for validation)",
             len(texts), len(blocks), settings["max_length"], n_val)
    model = add_lora(model, settings["lora"], "causal_lm", training.get("gradient_checkpointing", False))
    result = train(
        model,
        CausalLMTask(),
        train_set,
        val_set,
        config,
        pad_id=tokenizer.pad_token_id,
        checkpoint_dir=checkpoint_dir,
        fingerprint=fingerprint("post_pretrain", spec, settings, training, model_fingerprint(base), examples_digest(train_set)),
        parallel=parallel,
    )
    if parallel.is_main:
        with atomic_path(out_adapter, directory=True) as tmp:
            model.save_pretrained(tmp)
        merged = model.merge_and_unload()
        save_model(merged, tokenizer, out_model)
        write_json({"texts": len(texts), "blocks": len(blocks), **result.metrics}, out_metrics)
    finish(parallel, checkpoint_dir, training)


def pack_blocks(tokenizer, texts: list[str], block: int) -> list[list[int]]:
    """Concatenate the texts' tokens, each followed by EOS, and cut into full `block`s."""
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    stream = [token for seq in ids for token in [*seq, tokenizer.eos_token_id]]
    return [stream[i : i + block] for i in range(0, len(stream) - block + 1, block)]


def finish(parallel: Parallel, checkpoint_dir: str, training: Mapping[str, Any]) -> None:
    """Wait for rank 0's outputs, then drop the checkpoints unless asked to keep them."""
    parallel.barrier()
    if not training.get("keep_checkpoints", False):
        discard_checkpoints(checkpoint_dir, parallel)


def classification_examples(encoder: PairEncoder, rows: pd.DataFrame) -> Examples:
    return Examples(encode_rows(encoder, rows), {"label": rows["label"].to_numpy(dtype=np.int64)})


@dataclass
class FoldJob:
    """What a classifier-training job on one fold starts from (teacher or student)."""

    parallel: Parallel
    config: TrainConfig
    bf16: bool
    tokenizer: Any
    model: Any
    encoder: PairEncoder
    train_rows: pd.DataFrame
    val_rows: pd.DataFrame

    @classmethod
    def start(cls, base, spec, training, text, train_table: str, folds: str, fold: int) -> "FoldJob":
        """Base model and tokenizer on this process's device; the fold's rows (train rows
        with their mirrors when `training.swap_augment`)."""
        parallel = Parallel.from_env()
        device = parallel.device()
        config = train_config(training, spec)
        bf16 = use_bf16(config.precision, device)
        tokenizer, model = load_base(base, "seq_cls", spec, device, bf16)
        table = pd.read_parquet(train_table)
        split = read_json(folds)
        train_rows = with_swaps(fold_rows(table, split, fold, "train"), training.get("swap_augment", True))
        return cls(parallel, config, bf16, tokenizer, model, PairEncoder(tokenizer, text_config(text, text["train_max_length"])),
                   train_rows, fold_rows(table, split, fold, "val"))


def train_teacher(
    *,
    base: Mapping[str, Any],
    train_table: str,
    folds: str,
    fold: int,
    spec: Mapping[str, Any],
    training: Mapping[str, Any],
    text: Mapping[str, Any],
    out_adapter: str,
    out_metrics: str,
    out_val_logits: str,
    checkpoint_dir: str,
) -> None:
    """LoRA classifier on the fold's train rows (+ mirrors), best val-loss weights kept.

    Besides the adapter it writes the best model's logits on the fold's validation rows in
    both orders: held-out evidence for the metrics, the calibration and the evaluation.
    """
    job = FoldJob.start(base, spec, training, text, train_table, folds, fold)
    parallel, config, bf16, tokenizer, model, encoder = job.parallel, job.config, job.bf16, job.tokenizer, job.model, job.encoder
    train_rows, val_rows = job.train_rows, job.val_rows
    train_set = classification_examples(encoder, train_rows)
    val_set = classification_examples(encoder, val_rows.assign(swapped=False))
    log.info("fold %d: %d train rows (with mirrors), %d val rows", fold, len(train_set), len(val_set))
    model = add_lora(model, spec["lora"], "seq_cls", training.get("gradient_checkpointing", False))
    result = train(
        model,
        ClassificationTask(training.get("label_smoothing", 0.0)),
        train_set,
        val_set,
        config,
        pad_id=tokenizer.pad_token_id,
        checkpoint_dir=checkpoint_dir,
        fingerprint=fingerprint("train_teacher", fold, spec, training, text, model_fingerprint(base), examples_digest(train_set)),
        parallel=parallel,
    )
    if parallel.is_main:
        write_classifier_outputs(
            model, encoder, val_rows, {"train_rows": len(train_set), **result.metrics},
            max_tokens=config.eval_max_tokens, bf16=bf16, out_adapter=out_adapter, out_val_logits=out_val_logits, out_metrics=out_metrics,
        )
    finish(parallel, checkpoint_dir, training)


def write_classifier_outputs(
    model,
    encoder: PairEncoder,
    val_rows: pd.DataFrame,
    metrics: Mapping[str, Any],
    *,
    max_tokens: int,
    bf16: bool,
    out_adapter: str,
    out_val_logits: str,
    out_metrics: str,
    columns: Mapping[str, Any] | None = None,
) -> None:
    """What every classifier-training rule writes: the adapter, the best model's logits on
    the validation rows in both orders (plus `columns`), and `metrics.json`."""
    with atomic_path(out_adapter, directory=True) as tmp:
        model.save_pretrained(tmp)
    both = with_swaps(val_rows)
    logits = predict_logits(
        for_inference(model), encode_rows(encoder, both), pad_id=encoder.tokenizer.pad_token_id, max_tokens=max_tokens, bf16=bf16, desc="val"
    )
    frame = logits_frame(both, logits, {"label": both["label"].to_numpy(), **{k: np.full(len(both), v) for k, v in (columns or {}).items()}})
    write_parquet(frame, out_val_logits)
    write_json({**validation_metrics(frame), **metrics}, out_metrics)


def validation_metrics(frame: pd.DataFrame) -> dict[str, float]:
    """Log loss and accuracy of a logits table with labels, plain and with A/B-swap TTA.

    TTA averages the probabilities of each pair and of its mirror mapped back to the
    original order; the labels are those of the original rows.
    """
    original = frame[~frame["swapped"]].sort_values("id")
    logits = original[LOGIT_COLUMNS].to_numpy()
    labels = original["label"].to_numpy()
    metrics = {
        "val_rows": len(original),
        "val_log_loss": logits_log_loss(logits, labels),
        "val_accuracy": accuracy(logits, labels),
        "val_prior_log_loss": prior_log_loss(labels),
    }
    mirrored = frame[frame["swapped"]].sort_values("id")
    if len(mirrored) == len(original) and (mirrored["id"].to_numpy() == original["id"].to_numpy()).all():
        mirror = unswap_probs(softmax(mirrored[LOGIT_COLUMNS].to_numpy(), axis=1))
        tta = (softmax(logits, axis=1) + mirror) / 2
        metrics["val_log_loss_tta"] = log_loss(tta, labels)
        metrics["val_accuracy_tta"] = accuracy(tta, labels)
    return metrics


def teacher_logits(
    *,
    base: Mapping[str, Any],
    adapter: str,
    train_table: str,
    folds: str,
    fold: int,
    shard: int,
    n_shards: int,
    rows: str,
    spec: Mapping[str, Any],
    text: Mapping[str, Any],
    max_tokens: int,
    precision: str,
    out: str,
) -> None:
    """Raw logits of one shard of the rows a fold's teacher labels for the student.

    `rows` = "train": the fold's training rows in both orders (in-sample, the original's
    choice: the student learns the teacher's view of exactly the rows it trains on);
    "val": its validation rows (out-of-fold).
    """
    device = Parallel().device()
    bf16 = use_bf16(precision, device)
    tokenizer, model = load_base(base, "seq_cls", spec, device, bf16)
    model = for_inference(PeftModel.from_pretrained(model, adapter))
    table = pd.read_parquet(train_table)
    selected = with_swaps(fold_rows(table, read_json(folds), fold, rows))
    part = shard_of(selected, n_shards, shard)
    encoder = PairEncoder(tokenizer, text_config(text, text["train_max_length"]))
    logits = predict_logits(model, encode_rows(encoder, part), pad_id=tokenizer.pad_token_id, max_tokens=max_tokens, bf16=bf16)
    log.info("fold %d shard %d/%d: scored %d of %d rows", fold, shard, n_shards, len(part), len(selected))
    write_parquet(logits_frame(part, logits, {"fold": np.full(len(part), fold)}), out)
