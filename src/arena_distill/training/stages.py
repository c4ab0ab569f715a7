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
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from arena_distill.data.pairs import encode_rows, fold_ids, fold_rows, logit_ids, sample_pairs, with_swaps
from arena_distill.data.text import PairEncoder, TextConfig
from arena_distill.io import atomic_path, read_json, write_json, write_parquet
from arena_distill.modeling.inference import predict_logits
from arena_distill.modeling.models import add_lora, compile_layers, for_inference, load_adapter, load_model, load_tokenizer
from arena_distill.modeling.parallel import Parallel, use_bf16
from arena_distill.scoring.logits import logits_frame, shard_of
from arena_distill.scoring.metrics import validation_metrics
from arena_distill.training.checkpoints import discard_checkpoints
from arena_distill.training.config import TrainConfig
from arena_distill.training.loop import TrainResult, train
from arena_distill.training.tasks import ClassificationTask, Examples, score

log = logging.getLogger(__name__)

TRAIN_KEYS = tuple(field.name for field in fields(TrainConfig))


def model_training(training: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    """The `training` block as one model sees it: its own `training` overrides win."""
    return {**training, **spec.get("training", {})}


def train_config(training: Mapping[str, Any], spec: Mapping[str, Any]) -> TrainConfig:
    """The shared `training` block under a model's own keys (learning rate, epochs, seed,
    and its `training` overrides)."""
    merged = {**model_training(training, spec), **{k: v for k, v in spec.items() if k in TRAIN_KEYS}}
    return TrainConfig(**{k: v for k, v in merged.items() if k in TRAIN_KEYS})


EXECUTION_KEYS = frozenset(
    {
        "micro_batch_size",
        "packing",
        "micro_batch_tokens",
        "eval_max_tokens",
        "gradient_checkpointing",
        "compile",
        "attn_implementation",
        "log_every",
        "keep_checkpoints",
    }
)
"""Settings of how a run computes, not what it learns: they change memory and speed, and the
gradients only by float rounding, so a checkpoint written under one resumes under another
(a run requeued on other GPUs may need a smaller micro-batch, or packing)."""


def learning_settings(part: Any) -> Any:
    """`part` without its `EXECUTION_KEYS`, at any depth."""
    if isinstance(part, Mapping):
        return {key: learning_settings(value) for key, value in part.items() if key not in EXECUTION_KEYS}
    return part


def fingerprint(*parts: Any) -> str:
    """A digest of a run's settings, data and base model, to tell whether a checkpoint is ours."""
    digest = hashlib.sha1()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(np.ascontiguousarray(part).tobytes())
        else:
            digest.update(json.dumps(learning_settings(part), sort_keys=True, default=str).encode())
    return digest.hexdigest()


def model_fingerprint(base: Mapping[str, Any]) -> list:
    """Names, sizes and mtimes of a model directory's files (the path itself for a hub id, with
    its locked revision: a checkpoint of other weights is not resumed)."""
    entries = [base["revision"]] if base.get("revision") else []
    for key in ("path", "init_adapter"):
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


def load_base(base: Mapping[str, Any], spec: Mapping[str, Any], device: torch.device, bf16: bool):
    """Tokenizer and sequence classifier of `base["path"]` as the model `spec` asks (k-bit or not)."""
    tokenizer = load_tokenizer(base["path"])
    model = load_model(
        base["path"],
        pad_token_id=tokenizer.pad_token_id,
        seed=spec.get("seed", 0),
        dtype=torch.bfloat16 if bf16 else torch.float32,
        load_in_bits=spec.get("load_in_bits"),
        device=device,
        attn_implementation=spec.get("attn_implementation"),
    )
    return tokenizer, model


@dataclass(frozen=True)
class ClassifierOutputs:
    """Where a classifier-training job writes (the rule's outputs), keeps its checkpoints and
    its TensorBoard curves.

    Built at the boundary from the plain mapping the launcher passes on to workers.
    """

    adapter: str
    metrics: str
    val_logits: str
    checkpoint_dir: str
    curves_dir: str | None = None


def classification_examples(encoder: PairEncoder, rows: pd.DataFrame) -> Examples:
    return Examples(encode_rows(encoder, rows), {"label": rows["label"].to_numpy(dtype=np.int64)})


@dataclass
class FoldJob:
    """What a classifier-training job on one fold starts from (teacher or student)."""

    parallel: Parallel
    config: TrainConfig
    training: Mapping[str, Any]
    """The shared `training` block under the model's own `training` overrides."""
    bf16: bool
    tokenizer: Any
    model: Any
    encoder: PairEncoder
    train_rows: pd.DataFrame
    val_rows: pd.DataFrame

    @classmethod
    def start(cls, base, spec, training, text, train_rows: pd.DataFrame, val_rows: pd.DataFrame, config: TrainConfig) -> "FoldJob":
        """The model on this process's device with its LoRA: fresh, or the post-pretrained
        `base["init_adapter"]` (head dropped); train rows with their mirrors when
        `training.swap_augment`."""
        training = model_training(training, spec)
        parallel = Parallel.from_env()
        device = parallel.device()
        bf16 = use_bf16(config.precision, device)
        tokenizer, model = load_base(base, spec, device, bf16)
        model = add_lora(
            model, spec["lora"], training.get("gradient_checkpointing", False), base.get("init_adapter"), spec.get("kbit_upcast", True)
        )
        if base.get("init_adapter"):
            log.info("LoRA starts from %s (its head dropped)", base["init_adapter"])
        if training.get("compile", False):
            compile_layers(model)
            log.info("decoder layers compiled (torch.compile): the first steps of each new shape compile")
        train_rows = with_swaps(train_rows, training.get("swap_augment", True))
        return cls(
            parallel,
            config,
            training,
            bf16,
            tokenizer,
            model,
            PairEncoder(tokenizer, TextConfig.of(text, text["train_max_length"])),
            train_rows,
            val_rows,
        )

    @classmethod
    def for_fold(cls, base, spec, training, text, train_table: str, folds: str, fold: int) -> "FoldJob":
        """A fold run: the fold's train rows (`spec["train_rows"]` of them when set, drawn with the
        model's seed) and its validation rows."""
        table = pd.read_parquet(train_table)
        split = read_json(folds)
        train_rows = sample_pairs(fold_rows(table, split, fold, "train"), spec.get("train_rows"), spec.get("seed", 0))
        return cls.start(base, spec, training, text, train_rows, fold_rows(table, split, fold, "val"), train_config(training, spec))

    def train(self, task, train_set: Examples, val_set: Examples, outputs: ClassifierOutputs, fingerprint: str):
        return train(
            self.model,
            task,
            train_set,
            val_set,
            self.config,
            pad_id=self.tokenizer.pad_token_id,
            checkpoint_dir=outputs.checkpoint_dir,
            fingerprint=fingerprint,
            parallel=self.parallel,
            curves_dir=outputs.curves_dir,
        )

    def train_classifier(self, outputs: ClassifierOutputs, run: tuple, metrics: Mapping[str, Any] | None = None) -> None:
        """Train the plain classifier (cross-entropy on the labels) and write its outputs;
        `run` names the run's settings for the checkpoint fingerprint (the rows are added)."""
        train_set = classification_examples(self.encoder, self.train_rows)
        val_set = classification_examples(self.encoder, self.val_rows.assign(swapped=False))
        log.info("%d train rows (with mirrors), %d validation rows", len(train_set), len(val_set))
        result = self.train(
            ClassificationTask(self.training.get("label_smoothing", 0.0)),
            train_set,
            val_set,
            outputs,
            fingerprint(*run, examples_digest(train_set)),
        )
        self.finish(result, {"train_rows": len(train_set), **(metrics or {})}, outputs)

    def finish(
        self, result: TrainResult, metrics: Mapping[str, Any], outputs: ClassifierOutputs, columns: Mapping[str, Any] | None = None
    ) -> None:
        """Write the adapter, the kept weights' logits on the validation rows in both orders
        (plus `columns`) and `metrics.json`; then the checkpoints go (unless kept).

        The given order's logits are the run's last (or best) validation, not scored again;
        the mirrors are scored here by every rank, each its share, so no rank works alone
        while the others wait. Rank 0 then writes and the others leave: nobody waits in a
        collective while it writes (NCCL's watchdog would end the job). The checkpoints go
        only after the outputs are written, so a crash in between resumes, not retrains.
        """
        both = with_swaps(self.val_rows)
        todo = both[both["swapped"]] if result.val_logits is not None else both
        scored = score(
            self.model,
            Examples(encode_rows(self.encoder, todo)),
            self.tokenizer.pad_token_id,
            self.parallel.device(),
            self.parallel,
            self.config.eval_max_tokens,
            self.bf16,
        )
        logits = scored if result.val_logits is None else np.concatenate([result.val_logits, scored])
        if self.parallel.is_main:
            with atomic_path(outputs.adapter, directory=True) as tmp:
                self.model.save_pretrained(tmp)
            extra = {"label": both["label"].to_numpy(), **{k: np.full(len(both), v) for k, v in (columns or {}).items()}}
            frame = logits_frame(both, logits, extra)
            write_parquet(frame, outputs.val_logits)
            write_json({**validation_metrics(frame), **metrics, **result.metrics}, outputs.metrics)
            if not self.training.get("keep_checkpoints", False):
                discard_checkpoints(outputs.checkpoint_dir)


def train_teacher(
    *,
    base: Mapping[str, Any],
    train_table: str,
    folds: str,
    fold: int,
    spec: Mapping[str, Any],
    training: Mapping[str, Any],
    text: Mapping[str, Any],
    outputs: Mapping[str, str],
) -> None:
    """LoRA classifier on the fold's train rows (+ mirrors), the weights `select` names kept.

    Besides the adapter it writes the best model's logits on the fold's validation rows in
    both orders: held-out evidence for the metrics, the calibration and the evaluation.
    """
    log.info("fold %d", fold)
    job = FoldJob.for_fold(base, spec, training, text, train_table, folds, fold)
    job.train_classifier(
        ClassifierOutputs(**outputs),
        ("train_teacher", fold, spec, training, text, model_fingerprint(base)),
        {"init_adapter": base.get("init_adapter")},
    )


def post_pretrain(
    *,
    base: Mapping[str, Any],
    pairs: str,
    spec: Mapping[str, Any],
    settings: Mapping[str, Any],
    training: Mapping[str, Any],
    text: Mapping[str, Any],
    outputs: Mapping[str, str],
) -> None:
    """Step 1: the model's A/B/tie classifier pre-finetuned on a labelled pair set.

    The original trains the very classifier of the fold runs (same LoRA, both A/B orders)
    on UltraFeedback pairs converted to the competition schema, then starts every teacher
    and student fold run of that model from this LoRA with its head dropped. The adapter
    is carried forward, never merged: merging into a 4-bit base re-quantizes the weights
    and erases almost all of the update. `settings.dev_rows` random pairs, in their given
    order only, measure the run; the block's training keys (learning rate, epochs, batch
    size, ...) override the model's.
    """
    table = pd.read_parquet(pairs)
    seed = spec.get("seed", 0)
    n_dev = min(settings.get("dev_rows", 100), len(table) // 2)
    dev_ids = set(np.random.default_rng(seed).choice(table["id"].to_numpy(), size=n_dev, replace=False).tolist())
    is_dev = table["id"].isin(dev_ids)
    log.info("post-pretraining on %d pairs, %d held out as dev pairs", (~is_dev).sum(), n_dev)
    config = train_config(training, {"seed": seed, "training": spec.get("training", {}), **settings})
    job = FoldJob.start({"path": base["path"]}, spec, training, text, table[~is_dev], table[is_dev], config)
    job.train_classifier(ClassifierOutputs(**outputs), ("post_pretrain", spec, settings, training, text, model_fingerprint(base)))


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
    max_rows: int | None = None,
) -> None:
    """Raw logits of one shard of the rows a fold's teacher labels for the student.

    `rows` = "train": the fold's training rows in both orders (in-sample, the original's
    choice: the student learns the teacher's view of exactly the rows it trains on);
    "val": its validation rows (out-of-fold). `max_rows`: only that many pairs of them (both
    orders), the same for every teacher.
    """
    device = Parallel().device()
    bf16 = use_bf16(precision, device)
    tokenizer, model = load_base(base, spec, device, bf16)
    model = for_inference(load_adapter(model, adapter))
    table = pd.read_parquet(train_table)
    split = read_json(folds)
    scored = set(logit_ids(fold_ids(split, fold, rows), max_rows))
    side = fold_rows(table, split, fold, rows)
    selected = with_swaps(side[side["id"].isin(scored)])
    part = shard_of(selected, n_shards, shard)
    encoder = PairEncoder(tokenizer, TextConfig.of(text, text["train_max_length"]))
    logits = predict_logits(model, encode_rows(encoder, part), pad_id=tokenizer.pad_token_id, max_tokens=max_tokens, bf16=bf16)
    log.info("fold %d shard %d/%d: scored %d of %d rows", fold, shard, n_shards, len(part), len(selected))
    write_parquet(logits_frame(part, logits, {"fold": np.full(len(part), fold)}), out)
