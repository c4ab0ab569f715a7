"""What only a GPU cluster would otherwise show: collectives, the process group, resuming, missing CUDA."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.distributed as dist
from safetensors.torch import save_file

from arena_distill.data.tables import read_pairs
from arena_distill.launch import process_count
from arena_distill.modeling import parallel as parallel_module
from arena_distill.modeling.models import build_tiny_model, save_model
from arena_distill.modeling.parallel import Parallel
from arena_distill.training.checkpoints import Checkpoints
from arena_distill.training.stages import model_training, train_config
from tests.conftest import SAMPLE

TINY = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 64}


def test_collectives_get_tensors_on_the_loops_device(monkeypatch):
    """NCCL serves only CUDA tensors: a CPU tensor handed to it crashes the first step.

    A recording stand-in for the process group and a device other than the CPU ("meta")
    show which device every tensor reaches the collective on.
    """
    seen = []
    monkeypatch.setattr(dist, "all_reduce", lambda tensor, op=None: seen.append(tensor.device))
    monkeypatch.setattr(Parallel, "device", lambda self: torch.device("meta"))
    totals = torch.tensor([1.5, 2.0], dtype=torch.float64)
    summed = Parallel(rank=0, world=2).sum(totals)
    assert seen == [torch.device("meta")] and summed.device == torch.device("meta")


def test_the_process_group_serves_cpu_and_cuda_tensors_with_a_long_timeout(monkeypatch):
    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: calls.append(("set_device", index)))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, timeout: calls.append((backend, timeout)))
    parallel = Parallel.from_env()
    assert parallel == Parallel(rank=1, world=2, local_rank=1)
    assert calls == [("set_device", 1), ("cpu:gloo,cuda:nccl", parallel_module.GROUP_TIMEOUT)]
    assert parallel_module.GROUP_TIMEOUT.total_seconds() >= 3600  # longer than loading and saving a 70B model


class Payload:
    def __reduce__(self):
        return (print, ("code ran while loading a checkpoint",))


def test_checkpoints_never_unpickle_code(tmp_path):
    """Whoever can write under results/checkpoints/ must not run code in the next job."""
    checkpoints = Checkpoints(tmp_path, "run", Parallel())
    checkpoints.latest.mkdir(parents=True)
    (checkpoints.latest / "optim.pt").write_bytes(pickle.dumps({"optimizer": Payload()}))
    save_file({}, checkpoints.latest / "trainable.safetensors")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        checkpoints.restore(torch.nn.Linear(1, 1), None, None)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_job_given_gpus_without_cuda_fails_at_once():
    with pytest.raises(RuntimeError, match=r"given 8 GPU\(s\) but torch .* sees no CUDA device.*CPU-only wheel"):
        process_count({"gpu": 8})
    assert process_count({"processes": 2}) == 2 and process_count({}) == 1


def test_a_models_own_training_keys_are_honoured():
    training = {"gradient_checkpointing": True, "swap_augment": True, "batch_size": 64}
    spec = {"learning_rate": 5e-5, "training": {"gradient_checkpointing": False, "batch_size": 32}}
    assert model_training(training, spec) == {"gradient_checkpointing": False, "swap_augment": True, "batch_size": 32}
    assert train_config(training, spec).batch_size == 32


def test_jobs_run_offline_with_expandable_cuda_segments_unless_the_user_says_otherwise():
    code = "import os, arena_distill; print(os.environ['PYTORCH_CUDA_ALLOC_CONF'], os.environ['GPTQMODEL_OFFLINE'])"
    base = {"PATH": os.environ["PATH"], "PYTHONPATH": os.pathsep.join(sys.path)}
    plain = subprocess.run([sys.executable, "-c", code], env=base, capture_output=True, text=True, check=True)
    assert plain.stdout.split() == ["expandable_segments:True", "1"]
    mine = subprocess.run([sys.executable, "-c", code], env={**base, "GPTQMODEL_OFFLINE": "0"}, capture_output=True, text=True, check=True)
    assert mine.stdout.split() == ["expandable_segments:True", "0"]


def test_no_rank_waits_on_rank_0s_writes(tokenizer, tmp_path):
    """2 gloo processes under a 4 s group timeout; rank 0 spends 10 s writing its outputs.

    Rank 1 must not sit in a collective meanwhile (NCCL's watchdog would kill the job):
    it scores its share of the mirrors, then leaves.
    """
    model_dir = tmp_path / "llama"
    save_model(build_tiny_model("llama", tokenizer, TINY, seed=0), tokenizer, model_dir)
    rows, _ = read_pairs(SAMPLE / "post_pretrain.parquet", with_labels=True)
    rows.head(64).to_parquet(tmp_path / "pairs.parquet")
    repo = Path(__file__).resolve().parents[2]
    env = {"PYTHONPATH": f"{repo}:{repo / 'src'}", "OMP_NUM_THREADS": "1", "PATH": os.environ["PATH"]}
    job = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(Path(__file__).with_name("tail_worker.py")),
            str(model_dir),
            str(tmp_path / "pairs.parquet"),
            str(tmp_path / "out"),
            "4",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert job.returncode == 0, job.stderr[-3000:]
    dev = pd.read_parquet(tmp_path / "out/dev_logits.parquet")
    assert len(dev) == 2 * 16 and (tmp_path / "out/adapter/adapter_config.json").is_file()
    assert not (tmp_path / "out/checkpoints").exists()


def test_warnings_no_user_can_act_on_stay_out_of_the_logs():
    code = "import arena_distill, peft, bitsandbytes, gptqmodel"
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": os.pathsep.join(sys.path)}
    imported = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "Failed to load" not in imported.stderr and "Enum subclass" not in imported.stderr, imported.stderr


def test_progress_in_a_log_file_is_plain_lines(caplog):
    from arena_distill.logs import progress

    with caplog.at_level("INFO", logger="arena_distill.progress"):
        for _ in progress(range(3), desc="score"):
            pass
    assert caplog.messages and all("\r" not in message for message in caplog.messages)
    assert caplog.messages[-1].startswith("score: 100%")
