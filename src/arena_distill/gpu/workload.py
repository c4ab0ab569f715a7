"""What the benchmarks of `make gpu-check` run on: the preset's lengths and token budgets,
rows whose lengths are drawn from the 1,000 bundled real arena votes (so padding costs what it
costs), random-init models of the real configs built on the device directly, and the compile
settings of FlexAttention. Every comparison, the side processes and the phase share these, so
they sit below all of them.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from transformers import AutoConfig, AutoModelForSequenceClassification

from arena_distill.data.tables import read_pairs
from arena_distill.data.text import TextConfig, approximate_lengths
from arena_distill.gpu.harness import REPO
from arena_distill.workflow.config import PRESET

ARENA_VOTES = REPO / "data" / "sample" / "arena_calibration.parquet"
PRESET_LORA = {"r": 64, "alpha": 128, "dropout": 0.05}
ROWS_PER_STEP, TRAIN_STEPS, PREDICT_ROWS = 8, 4, 64
"""A training step is one GPU's share of the preset's 64-row batch over a node's 8 GPUs; one
warm-up step, then `TRAIN_STEPS` timed. Scoring times `PREDICT_ROWS` rows (about 40k tokens)."""


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
