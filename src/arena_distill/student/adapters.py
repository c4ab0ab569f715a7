"""Averaging the fold adapters of the student into one PEFT adapter.

Two ways, both giving an ordinary adapter directory that `PeftModel.from_pretrained` loads:

- `mean` (the original): the element-wise mean of every saved tensor — LoRA A, LoRA B and
  the fully trained modules (the `score` head, trained embeddings). Because ΔW = B·A is
  bilinear, mean(B)·mean(A) is *not* the mean of the folds' updates: it mixes cross terms
  B_i·A_j of unrelated folds and shrinks what the folds disagree on. It is what the
  1st-place solution merged, and it worked for them.
- `best_fold` (not an average: the source documents' alternative): the fold adapter with the
  lowest out-of-fold log loss, alone (`best_fold_adapter`).
- `mean_delta`: the exact mean of the updates. The folds' A matrices are stacked along the
  rank axis and their B matrices side by side, divided by n, so B'·A' = Σ B_i·A_i / n; the
  rank grows to n·r and `lora_alpha` is scaled to keep alpha / r (the LoRA scaling) fixed.
  Fully trained modules are averaged as in `mean`, which for them is already exact.

peft's own `add_weighted_adapter` refuses adapters with `modules_to_save` (every
sequence-classification adapter has its head there), hence the work on the tensors.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from arena_distill.errors import ConfigError
from arena_distill.io import atomic_path, named_load

WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"
METHODS = ("mean", "mean_delta")
# Settings that must agree for tensors to be averaged; the rest (paths, revisions) may differ.
MUST_AGREE = (
    "peft_type",
    "task_type",
    "r",
    "lora_alpha",
    "target_modules",
    "modules_to_save",
    "use_rslora",
    "use_dora",
    "rank_pattern",
    "alpha_pattern",
    "base_model_name_or_path",
)


def read_adapter(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    path = Path(path)
    if not (path / CONFIG).is_file() or not (path / WEIGHTS).is_file():
        raise FileNotFoundError(f"{path} is not a PEFT adapter directory (needs {CONFIG} and {WEIGHTS})")
    with named_load(path):
        return json.loads((path / CONFIG).read_text()), load_file(path / WEIGHTS)


def comparable(value):
    """A config value with list order ignored: peft saves `target_modules` from a set."""
    return sorted(value) if isinstance(value, list) else value


def check_compatible(paths: Sequence[str | Path], configs: list[dict], tensors: list[dict[str, torch.Tensor]]) -> None:
    """Raise ValueError naming the first adapter whose settings, keys or shapes differ from the first's."""
    for path, config, weights in zip(paths[1:], configs[1:], tensors[1:]):
        for key in MUST_AGREE:
            if comparable(config.get(key)) != comparable(configs[0].get(key)):
                raise ValueError(f"{path}: adapter_config.json key {key!r} is {config.get(key)!r}, {paths[0]} has {configs[0].get(key)!r}")
        if set(weights) != set(tensors[0]):
            diff = sorted(set(weights) ^ set(tensors[0]))
            raise ValueError(f"{path}: tensors differ from {paths[0]}'s, e.g. {diff[0]!r}")
        for name, value in weights.items():
            if value.shape != tensors[0][name].shape:
                raise ValueError(f"{path}: tensor {name!r} has shape {tuple(value.shape)}, {paths[0]} has {tuple(tensors[0][name].shape)}")


def mean_tensors(tensors: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise mean of every tensor, computed in float32 and stored in the input dtype."""
    return {
        name: torch.stack([weights[name].float() for weights in tensors]).mean(dim=0).to(value.dtype) for name, value in tensors[0].items()
    }


def is_lora_a(name: str) -> bool:
    return ".lora_A." in name or ".lora_embedding_A" in name


def is_lora_b(name: str) -> bool:
    return ".lora_B." in name or ".lora_embedding_B" in name


def concat_deltas(tensors: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """A stacked on the rank axis, B side by side over n: B'·A' = mean of B_i·A_i."""
    n = len(tensors)
    out = {}
    for name, value in tensors[0].items():
        if is_lora_a(name):
            out[name] = torch.cat([weights[name] for weights in tensors], dim=0)
        elif is_lora_b(name):
            out[name] = (torch.cat([weights[name].float() for weights in tensors], dim=1) / n).to(value.dtype)
        else:
            out[name] = torch.stack([weights[name].float() for weights in tensors]).mean(dim=0).to(value.dtype)
    return out


def widened_config(config: dict, n: int) -> dict:
    """The adapter config for n stacked ranks with the per-fold scaling unchanged.

    LoRA scales B·A by alpha / r (alpha / √r with rsLoRA); multiplying r by n needs alpha
    times n (times √n with rsLoRA) to keep it.
    """
    alpha_factor = math.sqrt(n) if config.get("use_rslora") else n
    widened = dict(config)
    widened["r"] = config["r"] * n
    widened["lora_alpha"] = config["lora_alpha"] * alpha_factor
    widened["rank_pattern"] = {k: v * n for k, v in (config.get("rank_pattern") or {}).items()}
    widened["alpha_pattern"] = {k: v * alpha_factor for k, v in (config.get("alpha_pattern") or {}).items()}
    return widened


def best_fold_adapter(paths: Sequence[str | Path], losses: Sequence[float], out_dir: str | Path) -> dict:
    """Copy the adapter with the lowest out-of-fold loss to `out_dir` as it is: the source
    documents' "single best fold", which merges and quantizes one fold's weights alone."""
    if len(paths) != len(losses) or not paths:
        raise ValueError(f"{len(paths)} adapters but {len(losses)} fold losses")
    best = min(range(len(paths)), key=lambda i: losses[i])
    config, tensors = read_adapter(paths[best])
    with atomic_path(out_dir, directory=True) as tmp:
        save_file(tensors, tmp / WEIGHTS, metadata={"format": "pt"})
        (tmp / CONFIG).write_text(json.dumps(config, indent=2))
    return {"method": "best_fold", "adapters": [str(paths[best])], "fold": best, "losses": list(losses), "r": config["r"]}


def average_adapters(paths: Sequence[str | Path], out_dir: str | Path, method: str = "mean") -> dict:
    """Write the average of the adapters at `paths` to `out_dir`; returns a summary."""
    if method not in METHODS:
        raise ConfigError(f"unknown averaging method {method!r}; choose from {list(METHODS)}", key="average.method")
    if not paths:
        raise ValueError("no adapters to average")
    loaded = [read_adapter(path) for path in paths]
    configs, tensors = [c for c, _ in loaded], [t for _, t in loaded]
    check_compatible(paths, configs, tensors)
    if method == "mean_delta" and configs[0].get("use_dora"):
        raise ConfigError("mean_delta cannot average DoRA adapters exactly; use method 'mean'", key="average.method")
    if method == "mean":
        averaged, config = mean_tensors(tensors), configs[0]
    else:
        averaged, config = concat_deltas(tensors), widened_config(configs[0], len(paths))
    with atomic_path(out_dir, directory=True) as tmp:
        save_file(averaged, tmp / WEIGHTS, metadata={"format": "pt"})
        (tmp / CONFIG).write_text(json.dumps(config, indent=2))
    return {"method": method, "adapters": [str(p) for p in paths], "tensors": len(averaged), "r": config["r"]}
