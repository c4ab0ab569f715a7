"""The tiny DAG on a real SLURM cluster (loopback), driven through the unchanged `profiles/slurm`.

`cluster.sh up` installs Debian's Slurm, munge, MariaDB and slurmdbd when missing and starts
them; every assertion about jobs reads `sacct`, as a site admin would. The test overlay
(`tests/slurm/profile`) only shortens the first status check and sizes the rules for a 2-core
node; see its comments.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections import Counter

import pandas as pd
import pytest

from tests.conftest import job_counts
from tests.slurm.loopback import DRIVER_ENV, DRIVER_TARGET, REQUEUED_JOB, SHARD_TARGETS, missing_cluster_reason
from tests.tiny import N_FOLDS, TEACHERS

pytestmark = pytest.mark.slurm

LOCAL_RULES = {
    "make_folds",
    "clean_folds",
    "gather_logits",
    "calibrate_teacher",
    "package_model",
    "submission",
    "evaluate",
    "figures",
    "all",
}


@pytest.fixture(scope="module")
def cluster(tiny_dag_on_slurm):
    """The loopback cluster the session brought up (see tests/slurm/loopback.py)."""
    reason = missing_cluster_reason()
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the SLURM test must run in CI: {reason}")
        pytest.skip(reason)
    return tiny_dag_on_slurm


def sacct(run_id: str, *, duplicates: bool = False) -> list[dict[str, str]]:
    """The allocations of one Snakemake run (its jobs share the run id as job name)."""
    fields = ["JobID", "State", "ReqCPUS", "ReqMem", "Timelimit", "Comment", "JobName"]
    command = ["sacct", "-X", "-n", "-P", "--starttime", "now-1days", "--name", run_id, "-o", ",".join(fields)]
    lines = subprocess.run(command + (["-D"] if duplicates else []), capture_output=True, text=True, check=True).stdout
    return [dict(zip(fields, line.split("|"))) for line in lines.splitlines() if line.strip()]


def rule_of(comment: str) -> tuple[str, str]:
    """`rule_train_teacher_wildcards_llama_1` -> (`train_teacher`, `llama_1`)."""
    match = re.fullmatch(r"rule_(\w+?)(?:_wildcards_(.*))?", comment)
    assert match, comment
    return match.group(1), match.group(2) or ""


@pytest.fixture(scope="module")
def slurm_run(cluster):
    return cluster.result()


@pytest.fixture(scope="module")
def driver_run(cluster):
    return cluster.driver_result()


def in_driver_env(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(DRIVER_ENV / "bin" / "python"), "-c", code], capture_output=True, text=True)


def test_the_driver_environment_drives_from_inside_an_allocation(driver_run, tiny_local_run):
    """`make driver`'s Snakemake (plugin 2.7.1, no model libraries) started by `sbatch`: every
    rule, the local ones too, is a SLURM job submitted from inside the allocation, run in the
    job environment (make_folds needs scikit-learn, which the driver lacks), with the same result."""
    workdir, run = driver_run
    assert in_driver_env("import importlib.metadata as m; print(m.version('snakemake-executor-plugin-slurm'))").stdout.strip() == "2.7.1"
    assert in_driver_env("import sklearn").returncode != 0 and in_driver_env("import torch").returncode != 0
    allocation = re.search(r"driver allocation (\d+)", run.stdout)
    assert allocation and "steps (100%) done" in run.stdout, run.stdout[-3000:]
    jobs = sacct(run.run_id)
    assert Counter(rule_of(job["Comment"])[0] for job in jobs) == {rule: n for rule, n in job_counts(run.stdout).items() if rule != "all"}
    assert {"make_folds", "clean_folds"} <= {rule_of(job["Comment"])[0] for job in jobs}
    assert {job["State"] for job in jobs} == {"COMPLETED"} and allocation.group(1) not in {job["JobID"] for job in jobs}
    for name in ("folds.json", "folds_clean.json"):
        assert json.loads((workdir / "results/folds" / name).read_text()) == json.loads(
            (tiny_local_run / "results/folds" / name).read_text()
        )
    assert (workdir / DRIVER_TARGET).exists()


def test_every_rule_instance_is_its_own_completed_slurm_job(slurm_run):
    workdir, run = slurm_run
    assert "steps (100%) done" in run.stdout
    jobs = sacct(run.run_id)
    planned = {rule: n for rule, n in job_counts(run.stdout).items() if rule not in LOCAL_RULES}
    comments = [job["Comment"] for job in jobs]
    assert len(set(comments)) == len(comments), "a rule instance ran twice"
    assert Counter(rule_of(comment)[0] for comment in comments) == planned
    assert {job["State"] for job in jobs} == {"COMPLETED"}
    assert {job["JobName"] for job in jobs} == {run.run_id}


def test_jobs_get_the_resources_the_profile_asks_for(slurm_run):
    _, run = slurm_run
    for job in sacct(run.run_id):
        rule, _ = rule_of(job["Comment"])
        # attempt 1: profiles/slurm's default-resources, the overlay's train_teacher
        expected = ("2", "3000M", "00:20:00") if rule == "train_teacher" else ("1", "4000M", "00:30:00")
        assert (job["ReqCPUS"], job["ReqMem"], job["Timelimit"]) == expected, job


def test_multi_device_teachers_run_torchrun_inside_one_task(slurm_run):
    workdir, _ = slurm_run
    for teacher in TEACHERS:
        for fold in range(N_FOLDS):
            log = (workdir / f"results/logs/train_teacher/{teacher}/fold{fold}.log").read_text()
            assert "launching 2 processes" in log and "torch.distributed.run" in log
    assert any((workdir / "logs/slurm/rule_train_teacher").rglob("*.log")), "successful jobs' SLURM logs are kept"


def test_the_run_ends_with_an_efficiency_report(slurm_run):
    """The plugin's sacct summary of every job's CPU and memory use (profiles/slurm)."""
    workdir, run = slurm_run
    report_file = workdir / f"logs/slurm/efficiency/efficiency_report_{run.run_id}.csv"
    assert report_file.exists(), run.stdout[-3000:]
    report = pd.read_csv(report_file)
    assert len(report) > 0 and any("Efficiency" in column for column in report.columns), report.columns.tolist()


def test_outputs_equal_a_local_run(slurm_run, tiny_local_run):
    workdir, _ = slurm_run
    for name in ("folds/folds.json", "folds/folds_clean.json"):
        assert json.loads((workdir / "results" / name).read_text()) == json.loads((tiny_local_run / "results" / name).read_text())
    on_slurm = pd.read_csv(workdir / "results/submission.csv").set_index("id").sort_index()
    local = pd.read_csv(tiny_local_run / "results/submission.csv").set_index("id").sort_index()
    assert on_slurm.index.equals(local.index)
    # Two torchrun processes sum the teachers' gradients in another order than one process.
    difference = (on_slurm - local).abs().to_numpy().max()
    print(f"max |probability difference| SLURM vs local: {difference:.2e}")
    assert difference < 1e-3


def test_one_fold_is_rebuilt_alone_and_resumes_after_a_requeue(cluster):
    """Force one teacher fold; requeue its job once it has a checkpoint; it resumes from there
    (`rebuild_one_fold_with_a_requeue`)."""
    rebuild = cluster.scenario("rebuild")
    run, slurm_id = rebuild.run, rebuild.slurm_id
    assert run.returncode == 0, run.stdout[-6000:]
    jobs = sacct(run.run_id)
    assert sorted(job["Comment"] for job in jobs) == [
        "rule_teacher_logits_wildcards_llama_1_0",
        "rule_teacher_logits_wildcards_llama_1_1",
        REQUEUED_JOB,
    ]
    attempts = [job["State"] for job in sacct(run.run_id, duplicates=True) if job["JobID"] == slurm_id]
    assert attempts[0] == "REQUEUED" and attempts[-1] == "COMPLETED", attempts
    log = (cluster.workdir / "results/logs/train_teacher/llama/fold1.log").read_text()
    assert f"resumed from step {rebuild.step}" in log
    print("one-fold rebuild:\n" + "\n".join("|".join(job.values()) for job in sacct(run.run_id, duplicates=True)))


def test_a_failed_fold_keeps_the_others_and_a_rerun_submits_only_it(cluster):
    """Break fold 0's adapter and rescore one shard of each fold: fold 1's shard is kept
    (`fail_one_fold_then_rerun`)."""
    scenario = cluster.scenario("failed fold")
    failed, workdir = scenario.failed, cluster.workdir
    assert failed.returncode != 0
    logs = re.findall(r"logs/slurm/rule_teacher_logits/qwen_0_0/\d+\.log", failed.stdout)
    assert logs and all((workdir / log).exists() for log in logs), failed.stdout[-4000:]
    jobs = sacct(failed.run_id)
    states = sorted((rule_of(job["Comment"])[1], job["State"], job["ReqMem"], job["Timelimit"]) for job in jobs)
    # retries: 1 resubmitted the failed shard once, with attempt-scaled memory and time
    assert states == [
        ("qwen_0_0", "FAILED", "4000M", "00:30:00"),
        ("qwen_0_0", "FAILED", "8000M", "01:00:00"),
        ("qwen_1_0", "COMPLETED", "4000M", "00:30:00"),
    ], states
    assert scenario.existed == [False, True]

    rerun = scenario.rerun
    assert rerun.returncode == 0, rerun.stdout[-6000:]
    assert [job["Comment"] for job in sacct(rerun.run_id)] == ["rule_teacher_logits_wildcards_qwen_0_0"]
    assert all((workdir / target).exists() for target in SHARD_TARGETS)
