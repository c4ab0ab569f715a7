"""Hub models pinned by the lock the download writes, checked before anything is loaded; offline,
with a hub-shaped cache (`models--org--name/snapshots/<commit>/`) built here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
import yaml

from arena_distill.errors import ConfigError, ModelLockError
from arena_distill.modeling import models
from arena_distill.modeling.model_lock import FULL_CHECK_ENV, LOCK_ENV, locked_path, read_lock, snapshot_entry, write_lock
from arena_distill.workflow.config import effective_config
from arena_distill.workflow.download import check_models_locked, download_models

MODEL = "google/gemma-2-9b"
REVISION = "a" * 40
FILES = {"config.json": b'{"model_type": "gemma2"}', "model.safetensors": b"weights" * 100, "tokenizer.json": b"{}"}


def fake_snapshot(cache: Path, model: str, revision: str, files: dict[str, bytes] = FILES) -> Path:
    """A model as huggingface_hub leaves it in its cache."""
    repo = cache / f"models--{model.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for name, content in files.items():
        (snapshot / name).write_bytes(content)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return snapshot


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


@pytest.fixture
def locked(tmp_path, cache, monkeypatch) -> Path:
    """MODEL downloaded at REVISION and locked; the lock exported as the workflow exports it."""
    snapshot = fake_snapshot(cache, MODEL, REVISION)
    write_lock(tmp_path / "models.lock.json", {MODEL: snapshot_entry(snapshot, REVISION)})
    monkeypatch.setenv(LOCK_ENV, str(tmp_path / "models.lock.json"))
    return snapshot


def test_a_locked_model_loads_from_its_checked_snapshot(locked):
    assert locked_path(MODEL) == str(locked)
    assert locked_path("results/models/student/base") == "results/models/student/base"  # not a hub id: unchecked


def test_a_model_the_lock_does_not_name_is_refused_with_the_fix(locked):
    with pytest.raises(ModelLockError, match=r"not in the lock .*arena-distill download") as error:
        locked_path("meta-llama/Llama-3.1-8B-Instruct")
    assert error.value.model == "meta-llama/Llama-3.1-8B-Instruct"


def test_a_missing_file_is_named(locked):
    (locked / "tokenizer.json").unlink()
    with pytest.raises(ModelLockError, match="missing") as error:
        locked_path(MODEL)
    assert (error.value.model, error.value.file) == (MODEL, "tokenizer.json")


def test_a_file_of_another_size_fails_the_fast_check(locked):
    (locked / "model.safetensors").write_bytes(b"other weights")
    with pytest.raises(ModelLockError, match="13 bytes where the lock says 700") as error:
        locked_path(MODEL)
    assert error.value.file == "model.safetensors"


def test_a_changed_file_of_the_same_size_fails_the_full_check(locked, monkeypatch):
    (locked / "model.safetensors").write_bytes(b"WEIGHTS" * 100)
    assert locked_path(MODEL) == str(locked)  # sizes agree: the fast default passes
    monkeypatch.setenv(FULL_CHECK_ENV, "1")
    with pytest.raises(ModelLockError, match="sha256 .* where the lock says") as error:
        locked_path(MODEL)
    assert error.value.file == "model.safetensors"


def test_another_revision_in_the_cache_is_named(tmp_path, cache, monkeypatch):
    fake_snapshot(cache, MODEL, "b" * 40)
    write_lock(tmp_path / "lock.json", {MODEL: {"revision": REVISION, "files": {}}})
    monkeypatch.setenv(LOCK_ENV, str(tmp_path / "lock.json"))
    with pytest.raises(ModelLockError, match=f"revision {REVISION} is locked but the cache .* holds {'b' * 40}"):
        locked_path(MODEL)


def test_nothing_is_loaded_from_a_snapshot_that_fails(locked, monkeypatch):
    def loaded(*args, **kwargs):
        raise AssertionError("from_pretrained ran")

    monkeypatch.setattr(models.AutoTokenizer, "from_pretrained", loaded)
    monkeypatch.setattr(models.AutoModelForSequenceClassification, "from_pretrained", loaded)
    (locked / "config.json").unlink()
    with pytest.raises(ModelLockError):
        models.load_tokenizer(MODEL)
    with pytest.raises(ModelLockError):
        models.load_model(MODEL, pad_token_id=0, seed=0)


class FakeHub:
    """huggingface_hub's two calls the download makes, answered from a local cache."""

    def __init__(self, cache: Path, current: str):
        self.cache, self.current, self.fetched = cache, current, []

    def model_info(self, repo, token=None):
        return type("Info", (), {"sha": self.current})()

    def snapshot_download(self, repo, revision, allow_patterns, ignore_patterns, token=None):
        self.fetched.append((repo, revision))
        return str(fake_snapshot(self.cache, repo, revision))


def test_the_download_resolves_each_model_to_a_commit_and_locks_its_files(tmp_path, cache, monkeypatch):
    hub = FakeHub(cache, current=REVISION)
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda: hub)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub.snapshot_download)
    pinned = "c" * 40
    entries = download_models({"student.model": MODEL, "teachers.llama.model": "meta-llama/x"}, revisions={"meta-llama/x": pinned})
    assert hub.fetched == [(MODEL, REVISION), ("meta-llama/x", pinned)]  # a pinned revision wins over the hub's current
    assert entries[MODEL]["files"]["model.safetensors"]["size"] == 700
    write_lock(tmp_path / "lock.json", entries)
    write_lock(tmp_path / "lock.json", {"other/model": {"revision": "d" * 40, "files": {}}})  # merged, not replaced
    assert set(read_lock(tmp_path / "lock.json")) == {MODEL, "meta-llama/x", "other/model"}
    monkeypatch.setenv(LOCK_ENV, str(tmp_path / "lock.json"))
    assert locked_path("meta-llama/x").endswith(f"snapshots/{pinned}")


def test_a_run_whose_hub_models_are_not_locked_stops_with_the_command(tmp_path):
    config = effective_config()
    config["student"]["model"] = MODEL
    config["models_lock"] = str(tmp_path / "lock.json")
    with pytest.raises(ConfigError, match=r"google/gemma-2-9b not in the lock .*arena-distill download --configfile run.yaml"):
        check_models_locked(config, "run.yaml")
    write_lock(tmp_path / "lock.json", {MODEL: {"revision": REVISION, "files": {}}})
    check_models_locked(config)
    config["student"]["revision"] = "e" * 40
    with pytest.raises(ConfigError, match=f"pinned at {'e' * 40} but locked at {REVISION}"):
        check_models_locked(config)


def test_verify_hashes_every_file_of_the_run(tmp_path, cache):
    """`arena-distill verify`: the full check from the command line, a named error and exit 2 on a change."""
    snapshot = fake_snapshot(cache, MODEL, REVISION)
    write_lock(tmp_path / "lock.json", {MODEL: snapshot_entry(snapshot, REVISION)})
    overlay = tmp_path / "run.yaml"
    overlay.write_text(yaml.safe_dump({"student": {"model": MODEL}, "models_lock": str(tmp_path / "lock.json")}))
    command = [sys.executable, "-m", "arena_distill", "verify", "--configfile", str(overlay)]
    env = {"HF_HUB_CACHE": str(cache), "PATH": "/usr/bin:/bin"}
    ok = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert ok.returncode == 0 and f"{MODEL} {REVISION}: 3 files as locked" in ok.stdout, ok.stderr
    (snapshot / "tokenizer.json").write_bytes(b"[]")
    changed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert changed.returncode == 2 and "ModelLockError: sha256" in changed.stderr and "file tokenizer.json" in changed.stderr
