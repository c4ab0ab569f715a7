"""The sbatch lines the pinned SLURM plugin builds from profiles/slurm, for the real preset's GPU rules.

The loopback cluster has no GPUs, so these lines are checked here instead: a multi-GPU job must
be one task (the job script starts torchrun itself), never one task per GPU.
"""

from types import SimpleNamespace

import pytest
import yaml
from snakemake_executor_plugin_slurm.submit_string import get_submit_command
from snakemake_executor_plugin_slurm.utils import set_gres_string

from tests.conftest import REPO

PROFILE = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())


class Resources(dict):
    """Snakemake's resources: read with .get() and as attributes."""

    __getattr__ = dict.__getitem__


def resources(rule: str, attempt: int) -> Resources:
    """default-resources overlaid by the rule's set-resources, expressions evaluated for `attempt`."""
    merged = {**PROFILE["default-resources"], **PROFILE["set-resources"].get(rule, {})}
    values = {}
    for key, value in merged.items():
        if key.startswith("slurm_"):
            continue  # partition and account come from the site's environment
        values[key] = eval(value, {"attempt": attempt}) if isinstance(value, str) else value
    return Resources(values)


def sbatch_line(rule: str, attempt: int = 1) -> str:
    job = SimpleNamespace(resources=resources(rule, attempt), threads=PROFILE["set-threads"].get(rule, 1), name=rule)
    params = dict(run_uuid="run", slurm_logfile="log", comment_str=f"rule_{rule}", account="", partition="", workdir="/w")
    return get_submit_command(job, params) + set_gres_string(job)


GPU_RULES = sorted(rule for rule, values in PROFILE["set-resources"].items() if values.get("gpu"))


@pytest.mark.parametrize("rule", GPU_RULES)
def test_a_gpu_job_is_one_task_with_all_its_gpus(rule):
    line = sbatch_line(rule)
    gpus = PROFILE["set-resources"][rule]["gpu"]
    assert f"--gpus={gpus}" in line and "--ntasks-per-gpu" not in line, line
    assert "--ntasks=" not in line or "--ntasks=1" in line, line
    assert f"--cpus-per-task={PROFILE['set-resources'][rule]['cpus_per_task']}" in line, line


def test_training_rules_hold_whole_nodes_and_scoring_one_gpu():
    """merge_student merges on the CPU, so it holds no GPU."""
    assert {rule: PROFILE["set-resources"][rule]["gpu"] for rule in GPU_RULES} == {
        "distill_student": 8,
        "post_pretrain": 8,
        "score_holdout": 1,
        "calibrate_submission": 1,
        "predict": 1,
        "quantize_student": 1,
        "teacher_logits": 1,
        "train_teacher": 8,
        "prompt_judge": 1,
    }


def test_retries_ask_for_more_memory_and_time():
    first, second = sbatch_line("average_adapters", 1), sbatch_line("average_adapters", 2)
    assert "--mem 16000" in first and "-t 30" in first
    assert "--mem 32000" in second and "-t 60" in second


def test_jobs_are_requeued_after_preemption():
    assert PROFILE["slurm-requeue"] is True and PROFILE["retries"] >= 1


def partition(rule: str) -> str:
    expression = {**PROFILE["default-resources"], **PROFILE["set-resources"].get(rule, {})}["slurm_partition"]
    return eval(expression)


def test_gpu_and_cpu_rules_go_to_their_own_partitions(monkeypatch):
    """CPU-only jobs never queue for a GPU partition; one variable still sets both."""
    rules = sorted(PROFILE["set-resources"])
    monkeypatch.setenv("ARENA_SLURM_GPU_PARTITION", "gpu")
    monkeypatch.setenv("ARENA_SLURM_CPU_PARTITION", "cpu")
    assert {rule: partition(rule) for rule in rules} == {rule: "gpu" if rule in GPU_RULES else "cpu" for rule in rules}
    assert partition("a rule without set-resources") == "cpu"
    monkeypatch.delenv("ARENA_SLURM_GPU_PARTITION")
    monkeypatch.delenv("ARENA_SLURM_CPU_PARTITION")
    monkeypatch.setenv("ARENA_SLURM_PARTITION", "all")
    assert {partition(rule) for rule in rules} == {"all"}
    monkeypatch.delenv("ARENA_SLURM_PARTITION")
    assert {partition(rule) for rule in rules} == {""}  # the cluster's default partition
