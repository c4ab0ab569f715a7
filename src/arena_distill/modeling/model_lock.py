"""Hub models pinned by a lock: which commit of each, and the size and sha256 of every file.

`arena-distill download` resolves each hub id of a run to a commit, fetches that revision and
writes the lock (`models_lock` in the config, committed with it). A job that loads a hub model
checks the cached snapshot of the locked commit against the lock first (revision and file
sizes; every sha256 with `ARENA_VERIFY_HASHES=1` or `arena-distill verify`) and loads from that
snapshot, so six months later the run cannot silently train on other weights. The workflow
exports the lock's path to its jobs as `ARENA_MODELS_LOCK`; without it nothing is checked (a
tiny model, a local directory, the scoring command). Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from arena_distill.errors import ModelLockError

LOCK_ENV = "ARENA_MODELS_LOCK"
FULL_CHECK_ENV = "ARENA_VERIFY_HASHES"
HUB_ID = re.compile(r"([\w.-]+/)?[\w.-]+")
FIX = "run `arena-distill download --configfile <the run's config files>` where the hub is reachable, and commit the lock"


def is_hub_id(path: str | Path) -> bool:
    """`owner/name` or `name`, as the hub spells repositories, and not a directory here: what
    `from_pretrained` would look up on the hub; anything else is a local path."""
    spec = str(path)
    return HUB_ID.fullmatch(spec) is not None and not spec.startswith(".") and not Path(spec).is_dir()


def hub_cache() -> Path:
    """The Hugging Face hub cache, found as huggingface_hub finds it."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
    return Path(home) / "hub"


def repo_dir(model: str, cache: Path) -> Path:
    return cache / f"models--{model.replace('/', '--')}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def snapshot_entry(snapshot: Path, revision: str) -> dict[str, Any]:
    """The lock entry of a downloaded snapshot: its commit and every file's size and sha256."""
    files = sorted(path for path in snapshot.rglob("*") if path.is_file())
    return {
        "revision": revision,
        "files": {path.relative_to(snapshot).as_posix(): {"size": path.stat().st_size, "sha256": sha256_of(path)} for path in files},
    }


def read_lock(path: str | Path) -> dict[str, dict[str, Any]]:
    """hub id -> entry; an absent file is an empty lock."""
    path = Path(path)
    return json.loads(path.read_text())["models"] if path.is_file() else {}


def write_lock(path: str | Path, entries: Mapping[str, Mapping[str, Any]]) -> None:
    """Merge `entries` into the lock at `path` (other models kept), written atomically."""
    path = Path(path)
    models = {**read_lock(path), **entries}
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.tmp")
    staged.write_text(json.dumps({"models": dict(sorted(models.items()))}, indent=1) + "\n")
    os.replace(staged, path)


def verify_snapshot(model: str, entry: Mapping[str, Any], cache: Path | None = None, full: bool = False) -> Path:
    """The cached snapshot of `model`'s locked revision, after checking that it holds every
    locked file at its size (and sha256 when `full`); ModelLockError naming the model, the file
    and what differs otherwise."""
    cache = cache or hub_cache()
    revision = entry["revision"]
    snapshots = repo_dir(model, cache) / "snapshots"
    snapshot = snapshots / revision
    if not snapshot.is_dir():
        cached = sorted(path.name for path in snapshots.iterdir()) if snapshots.is_dir() else []
        found = f"the cache {cache} holds {', '.join(cached)}" if cached else f"{cache} does not hold it"
        raise ModelLockError(f"revision {revision} is locked but {found}; {FIX}", model=model)
    for name, locked in entry["files"].items():
        path = snapshot / name
        if not path.is_file():
            raise ModelLockError(f"a locked file is missing from the snapshot {snapshot}; {FIX}", model=model, file=name)
        size = path.stat().st_size
        if size != locked["size"]:
            raise ModelLockError(f"{size} bytes where the lock says {locked['size']}", model=model, file=name)
        if full and sha256_of(path) != locked["sha256"]:
            raise ModelLockError(f"sha256 {sha256_of(path)} where the lock says {locked['sha256']}", model=model, file=name)
    return snapshot


def locked_path(path: str | Path) -> str:
    """What to load for `path`: the verified snapshot of a hub id when the run has a lock
    (`ARENA_MODELS_LOCK`), anything else unchanged. Called before any weight is read."""
    lock_file = os.environ.get(LOCK_ENV)
    if not lock_file or not is_hub_id(path):
        return str(path)
    entry = read_lock(lock_file).get(str(path))
    if entry is None:
        raise ModelLockError(f"the model is not in the lock {lock_file}; {FIX}", model=str(path))
    return str(verify_snapshot(str(path), entry, full=os.environ.get(FULL_CHECK_ENV) == "1"))
