"""Fetch a run's hub models into the Hugging Face cache, once, before any job runs.

Compute nodes are often offline and every job runs with `HF_HUB_OFFLINE=1`, so the
weights must already be in the cache the jobs read (`HF_HOME` on a shared filesystem). This
runs on a login node that can reach the hub, with a token from the environment (`HF_TOKEN`)
for the gated models (Llama 3, Gemma 2: accept their licences on the hub first).

Only what `from_pretrained` reads is fetched: the safetensors weights, configs and the
tokenizer. The Llama-3 repositories also hold the original consolidated checkpoints
(`original/`, as large again), which no job reads.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from arena_distill.workflow.config_checks import is_hub_id, model_keys

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


def download_models(models: Mapping[str, str], token: str | None = None) -> dict[str, str]:
    """Download each hub id into the cache (`HF_HOME`); returns hub id -> local snapshot.

    The package sets `HF_HUB_OFFLINE=1` for every process it runs in; this is the one place
    that asks for the network, so it lifts that before huggingface_hub reads it.
    """
    os.environ["HF_HUB_OFFLINE"] = "0"
    from huggingface_hub import snapshot_download

    snapshots = {}
    for key, repo in models.items():
        log.info("%s: fetching %s", key, repo)
        snapshots[repo] = snapshot_download(repo, allow_patterns=WANTED, ignore_patterns=SKIPPED, token=token)
        log.info("%s: %s", key, snapshots[repo])
    return snapshots
