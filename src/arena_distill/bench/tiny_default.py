"""The model the benchmarks run: the embedded default's llama teacher at its tiny sizes, with
its LoRA, text budget, batches and optimizer read from `config/config.yaml`, as a random-init
base saved with a tokenizer trained on the bundled rows.

One base serves every measurement of a run, so each ratio compares two ways of running one
model, never two models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from arena_distill.data.text import format_pair
from arena_distill.modeling.models import add_lora, build_tiny_model, load_model, save_model
from arena_distill.modeling.tokenizer import train_bpe_tokenizer
from arena_distill.workflow.config import WORKFLOW_DIR

REPO = WORKFLOW_DIR
SAMPLE = REPO / "data" / "sample"


@dataclass(frozen=True)
class Setup:
    """The embedded default's llama teacher: its sizes, LoRA, text budget, batches and optimizer."""

    sizes: dict
    lora: dict
    max_length: int
    batch_size: int
    micro_batch_size: int
    learning_rate: float
    max_tokens: int
    """Token budget of a prediction batch (`predict.max_tokens`)."""

    @classmethod
    def from_config(cls, path: Path = REPO / "config" / "config.yaml") -> "Setup":
        config = yaml.safe_load(path.read_text())
        llama = config["teachers"]["llama"]
        training = config["training"]
        return cls(
            llama["tiny"],
            llama["lora"],
            config["text"]["train_max_length"],
            training["batch_size"],
            training["micro_batch_size"],
            llama["learning_rate"],
            config["predict"]["max_tokens"],
        )


def tiny_base(setup: Setup, rows: pd.DataFrame, workdir: Path):
    """A tokenizer trained on the rows and the default's random-init llama, saved as a base."""
    texts = [format_pair(p, a, b) for p, a, b in zip(rows["prompt"], rows["response_a"], rows["response_b"])]
    tokenizer = train_bpe_tokenizer(texts, vocab_size=4000)
    save_model(build_tiny_model("llama", tokenizer, setup.sizes, seed=0), tokenizer, workdir / "base")
    return tokenizer, workdir / "base"


def classifier(base: Path, tokenizer, lora: dict | None):
    model = load_model(base, pad_token_id=tokenizer.pad_token_id, seed=0)
    return add_lora(model, lora) if lora is not None else model
