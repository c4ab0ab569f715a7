"""A fold ensemble on disk: a directory whose `ensemble.json` names its members (`fold0`,
`fold1`, …), each a whole adapter or model directory.

With `average.method: ensemble` the fold adapters are not averaged: the ensemble goes through
merging, quantization and packaging member by member, keeping its shape, and prediction
scores every member and averages their probabilities (the source documents' fold
ensemble, k times the scoring cost and the memory of one model).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from arena_distill.io import SNAKEMAKE_TIMESTAMP, atomic_path

ENSEMBLE_FILE = "ensemble.json"
SHARED_FILES = ("inference.json", "README.md")
"""What an ensemble directory carries at its top beside the members (the first member's:
all members are made with the same settings)."""


def members(path: str | Path) -> list[Path]:
    """The member directories of a fold ensemble, or `[path]` for a single adapter or model."""
    path = Path(path)
    listed = path / ENSEMBLE_FILE
    if not listed.is_file():
        return [path]
    return [path / name for name in json.loads(listed.read_text())["members"]]


def copy_members(paths: Sequence[str | Path], out_dir: str | Path) -> dict:
    """The fold adapters at `paths` as one ensemble directory (`fold0`, … in their order)."""
    if not paths:
        raise ValueError("no adapters for the ensemble")
    names = [f"fold{i}" for i in range(len(paths))]
    with atomic_path(out_dir, directory=True) as tmp:
        for name, path in zip(names, paths):
            shutil.copytree(path, tmp / name, ignore=shutil.ignore_patterns(SNAKEMAKE_TIMESTAMP))
        (tmp / ENSEMBLE_FILE).write_text(json.dumps({"members": names}))
    return {"method": "ensemble", "adapters": [str(p) for p in paths], "members": names}


def map_members(source: str | Path, out_dir: str | Path, write: Callable[[Path, Path], None]) -> None:
    """`write(source, out_dir)` for one model; for an ensemble, `write` per member into the
    same member name under `out_dir`, the whole written atomically, the members' shared files
    (inference settings, card) copied to the top."""
    source = Path(source)
    if not (source / ENSEMBLE_FILE).is_file():
        write(source, Path(out_dir))
        return
    with atomic_path(out_dir, directory=True) as tmp:
        for member in members(source):
            write(member, tmp / member.name)
        shutil.copy2(source / ENSEMBLE_FILE, tmp / ENSEMBLE_FILE)
        first = tmp / members(source)[0].name
        for name in SHARED_FILES:
            if (first / name).is_file():
                shutil.copy2(first / name, tmp / name)
