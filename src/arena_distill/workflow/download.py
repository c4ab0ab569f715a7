"""Fetch a run's hub models into the Hugging Face cache, once, before any job runs.

Compute nodes are often offline and every job runs with `HF_HUB_OFFLINE=1`, so the
weights must already be in the cache the jobs read (`HF_HOME` on a shared filesystem). This
runs on a login node that can reach the hub, with a token from the environment (`HF_TOKEN`)
for the gated models (Llama 3, Gemma 2: accept their licences on the hub first).

Only what `from_pretrained` reads is fetched: the safetensors weights, configs and the
tokenizer. The Llama-3 repositories also hold the original consolidated checkpoints
(`original/`, as large again), which no job reads. Each model is pinned: its commit and the
size and sha256 of every file go into the run's lock (`models_lock`), which the jobs check
before they load a weight (`arena_distill.modeling.model_lock`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from arena_distill.errors import ConfigError
from arena_distill.modeling.model_lock import is_hub_id, read_lock, snapshot_entry
from arena_distill.workflow.config_checks import model_keys

WANTED = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt", "*.tiktoken"]
"""Files of a repository the jobs read; the rest (original/, *.pth, *.bin copies) are skipped."""
SKIPPED = ["original/*"]

log = logging.getLogger(__name__)


def hub_models(config: Mapping[str, Any]) -> dict[str, str]:
    """Config key -> hub id of every model the run loads from the hub (teachers only when the
    run trains them; tiny models and local directories need nothing)."""
    precomputed = bool(config.get("distill", {}).get("teacher_logits"))
    return {
        key: spec
        for key, spec in model_keys(config).items()
        if not spec.startswith("tiny:")
        and not os.path.isdir(spec)
        and is_hub_id(spec)
        and not (precomputed and key.startswith("teachers."))
    }


def pinned_revisions(config: Mapping[str, Any]) -> dict[str, str]:
    """hub id -> the `revision` a model spec names (a preset may pin a commit itself)."""
    specs = [*config.get("teachers", {}).values(), config["student"]]
    return {spec["model"]: spec["revision"] for spec in specs if spec.get("revision")}


def download_models(models: Mapping[str, str], token: str | None = None, revisions: Mapping[str, str] | None = None) -> dict[str, dict]:
    """Resolve each hub id to a commit (the spec's `revision`, else the hub's current one),
    download that commit into the cache (`HF_HOME`) and return hub id -> its lock entry
    (`model_lock.snapshot_entry`: the revision, every file's size and sha256).

    The package sets `HF_HUB_OFFLINE=1` for every process it runs in; this is the one place
    that asks for the network, so it lifts that before huggingface_hub reads it.
    """
    os.environ["HF_HUB_OFFLINE"] = "0"
    from huggingface_hub import HfApi, snapshot_download

    entries = {}
    for key, repo in models.items():
        revision = (revisions or {}).get(repo) or HfApi().model_info(repo, token=token).sha
        log.info("%s: fetching %s at %s", key, repo, revision)
        snapshot = snapshot_download(repo, revision=revision, allow_patterns=WANTED, ignore_patterns=SKIPPED, token=token)
        entries[repo] = snapshot_entry(Path(snapshot), revision)
        log.info("%s: %s (%d files)", key, snapshot, len(entries[repo]["files"]))
    return entries


def check_models_locked(config: Mapping[str, Any], configfiles: str = "<the run's config files>") -> None:
    """Before a real run starts: every hub model of the run is in the lock, at the revision its
    spec names if it names one; ConfigError with the command that fixes it otherwise."""
    lock = read_lock(config["models_lock"])
    pinned = pinned_revisions(config)
    unlocked = [repo for repo in hub_models(config).values() if repo not in lock]
    if unlocked:
        raise ConfigError(
            f"{', '.join(unlocked)} not in the lock {config['models_lock']}: run `arena-distill download --configfile "
            f"{configfiles}` where the hub is reachable, and commit the lock",
            key="models_lock",
        )
    for repo, revision in pinned.items():
        if repo in lock and lock[repo]["revision"] != revision:
            raise ConfigError(
                f"{repo} is pinned at {revision} but locked at {lock[repo]['revision']}; download it again", key="models_lock"
            )
