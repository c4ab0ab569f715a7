"""A synthetic preference task with an obvious signal, and a tiny classifier for it.

Token ids stand in for text: the preferred response carries the marker token. A model
that learns nothing stays at chance (~0.33 accuracy over three balanced classes); one
that reads which response holds the marker reaches ~1.0.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, LlamaConfig

from arena_distill.modeling.models import add_lora
from arena_distill.training.tasks import Examples

VOCAB = 64
PAD = EOS = 1
BOS, SEP_A, SEP_B, MARKER = 2, 3, 4, 5
FIRST_WORD = 8


def marker_pairs(n: int, seed: int) -> Examples:
    """`n` pairs; label 0 if the marker is in A, 1 if in B, 2 (tie) if in neither."""
    rng = np.random.default_rng(seed)
    ids, labels = [], []
    for _ in range(n):
        label = int(rng.integers(3))
        prompt = rng.integers(FIRST_WORD, VOCAB, rng.integers(2, 6)).tolist()
        a = rng.integers(FIRST_WORD, VOCAB, rng.integers(3, 12)).tolist()
        b = rng.integers(FIRST_WORD, VOCAB, rng.integers(3, 12)).tolist()
        if label < 2:
            target = a if label == 0 else b
            target.insert(int(rng.integers(len(target) + 1)), MARKER)
        ids.append([BOS, *prompt, SEP_A, *a, SEP_B, *b, EOS])
        labels.append(label)
    return Examples(ids, {"label": np.array(labels, dtype=np.int64)})


def tiny_classifier(seed: int = 0, lora: bool = True, dropout: float = 0.0) -> torch.nn.Module:
    """A 2-layer Llama classifier (pad = EOS) with a full-rank LoRA, as the tiny default trains
    (`dropout`: the LoRA dropout; the presets train at 0.05, which draws random numbers every step)."""
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
        num_labels=3,
    )
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config)
    if not lora:
        return model
    return add_lora(model, {"r": 32, "alpha": 64, "dropout": dropout, "modules_to_save": ["embed_tokens"]})


class Stop(Exception):
    """Raised by `stop_at`'s hook: a run interrupted at a checkpoint, as a killed job is."""


def stop_at(step: int):
    """An `on_checkpoint` hook that stops the run once the checkpoint of `step` is written."""

    def hook(at: int) -> None:
        if at == step:
            raise Stop

    return hook
