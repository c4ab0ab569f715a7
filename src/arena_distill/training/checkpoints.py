"""Resumable checkpoints of a training run, kept outside the rule's outputs.

After every evaluation the trainable weights, optimizer, scheduler, every process's RNG
state and the step are saved under the checkpoint directory, tagged with a fingerprint of
the run (data, base model, settings). A rerun with the same fingerprint continues from that
step — the batch plan is a pure function of (seed, epoch), so the data position is the step
itself. A different fingerprint starts over. Saving goes through a staging directory and
two renames, so a kill at any moment leaves a complete checkpoint behind.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from arena_distill.io import atomic_path
from arena_distill.modeling.parallel import Parallel

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    """Where a training run stands: what a checkpoint saves beside the weights, optimizer,
    schedule and random state, and what the run's metrics report."""

    step: int = 0
    best_loss: float = math.inf
    best_step: int = -1
    losses: list[float] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    tokens: int = 0
    train_seconds: float = 0.0
    seconds: float = 0.0
    resumed_from: list[int] = field(default_factory=list)


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
        self.best_logits = self.root / "best-val-logits.safetensors"
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
        # Tensors come back on the CPU (load_state_dict moves them to each parameter's
        # device): without it every rank's optimizer state lands on the GPU that saved it.
        optim = torch.load(self.latest / "optim.pt", map_location="cpu", weights_only=True)
        optimizer.load_state_dict(optim["optimizer"])
        scheduler.load_state_dict(optim["scheduler"])
        set_rng_state(torch.load(self.latest / f"rng-{self.parallel.rank}.pt", map_location="cpu", weights_only=True))
        saved = json.loads((self.latest / "state.json").read_text())
        saved.pop("fingerprint")
        return TrainState(**saved)

    def save_best(self, model, val_logits: np.ndarray) -> None:
        """The best weights so far, with their validation logits (the run writes those)."""
        if self.parallel.is_main:
            with atomic_path(self.best) as tmp:
                save_file(trainable_state(model), tmp)
            with atomic_path(self.best_logits) as tmp:
                save_file({"logits": torch.from_numpy(np.ascontiguousarray(val_logits))}, tmp)

    def load_best(self, model) -> np.ndarray:
        """Put the best weights back into `model`; returns their validation logits."""
        load_trainable_state(model, load_file(self.best))
        return load_file(self.best_logits)["logits"].numpy()


def rng_state() -> dict:
    """Every generator's state as tensors, ints and tuples: what `weights_only` loading
    accepts, so a checkpoint never needs unpickling code to resume."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    numpy = {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": position, "has_gauss": has_gauss, "gauss": gauss}
    state = {"python": random.getstate(), "numpy": numpy, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping) -> None:
    random.setstate(state["python"])
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["position"], numpy["has_gauss"], numpy["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def discard_checkpoints(checkpoint_dir: str | Path) -> None:
    """Remove a finished run's checkpoints (called once its outputs are written)."""
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
