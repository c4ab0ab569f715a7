"""Dry runs: the DAG plans exactly the jobs the config implies, for the default and the preset."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from arena_distill.workflow.config import PRESET, with_placeholder_data
from tests.conftest import REPO, copy_workflow, job_counts, snakemake

pytestmark = pytest.mark.workflow
DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
N_FOLDS = DEFAULT["folds"]["n"]


@pytest.fixture(scope="module")
def workflow_copy(tmp_path_factory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("dryrun"))


def test_default_plans_every_table_fold_step_and_tiny_model(workflow_copy):
    result = snakemake(workflow_copy, "-n", "--profile", "profiles/local")
    assert job_counts(result.stdout) == {
        "prepare_data": 4,  # train, test, post_pretrain, calibration
        "make_folds": 1,
        "clean_folds": 1,
        "init_model": 3,  # two tiny teachers and the tiny student
        "post_pretrain": 3,
        "train_teacher": 4,  # 2 teachers x 2 folds
        "teacher_logits": 4,  # one shard each
        "gather_logits": 4,
        "heuristic_model": 2,
        "heuristic_test": 2,  # each fold's fitted model on the labelled test rows
        **STUDENT_SIDE(2, calibrated=True),
        "all": 1,
    }
    assert "Missing output files" in result.stdout


def test_the_committed_small_dag_plans_from_the_repository_root(tmp_path):
    """`.test/` as a user runs it by hand: its links reach the project's config and data."""
    workdir = copy_workflow(tmp_path / "repo")
    shutil.copytree(REPO / ".test", workdir / ".test", symlinks=True)
    result = snakemake(workdir, "--directory", ".test", "--configfile", ".test/small.yaml", "-n", "--cores", "2")
    assert job_counts(result.stdout) == {
        "prepare_data": 4,
        "make_folds": 1,
        "clean_folds": 1,
        "init_model": 3,
        "post_pretrain": 3,
        "train_teacher": 4,
        "calibrate_teacher": 2,  # calibration on: one temperature per teacher from its validation logits
        "prompt_judge": 1,
        "teacher_logits": 8,  # 2 teachers x 2 folds x 2 shards
        "gather_logits": 4,
        "heuristic_model": 2,
        "heuristic_test": 2,  # each fold's fitted model on the labelled test rows
        **STUDENT_SIDE(2, calibrated=True),
        "all": 1,
    }


def STUDENT_SIDE(n_folds: int, holdout: bool = True, calibrated: bool = False) -> dict[str, int]:
    """Steps 5-9: a student per fold, then one of everything; models are scored on the
    holdout prompts only when the run keeps some (each fold student, the merged and the
    exported model, one job each), the submission calibrated only when asked."""
    single = ["average_adapters", "merge_student", "quantize_student", "package_model", "predict", "submission", "evaluate", "figures"]
    single += ["calibrate_submission"] * calibrated
    return {"distill_student": n_folds, **dict.fromkeys(single, 1), **({"score_holdout": n_folds + 2} if holdout else {})}


def planned_inputs(output: str, rule: str) -> list[str]:
    """The input line of every job of `rule` in a dry run's output."""
    blocks = output.split(f"rule {rule}:")[1:]
    return [next(line for line in block.splitlines() if line.strip().startswith("input:")) for block in blocks]


def preset_copy(workflow_copy: Path) -> Path:
    """The preset's data files, as empty placeholders: a dry run reads none of them."""
    with_placeholder_data(workflow_copy, [PRESET])
    return workflow_copy


def test_preset_plans_the_real_dag_without_weights(workflow_copy):
    preset_copy(workflow_copy)
    result = snakemake(workflow_copy, "-n", "--configfile", "config/presets/blackpearl.yaml")
    # Real model specs are params, not inputs: no init_model job, no weights needed.
    preset = yaml.safe_load((REPO / "config" / "presets" / "blackpearl.yaml").read_text())
    teacher_folds = 2 * 5  # Llama-3-70B and Qwen2-72B on 5 folds
    assert job_counts(result.stdout) == {
        "prepare_data": 3,
        "make_folds": 1,
        "clean_folds": 1,
        "post_pretrain": 3,  # both teachers and the student, from their hub ids
        "train_teacher": teacher_folds,
        "teacher_logits": teacher_folds * preset["teacher_logits"]["n_shards"],
        "gather_logits": teacher_folds,
        "heuristic_model": 5,  # the heuristic features model per fold: an evaluation row
        **STUDENT_SIDE(5, holdout=False),  # no holdout: no job scores models for the evaluation
        "all": 1,
    }
    assert "data/lmsys-33k/lmsys-33k-deduplicated.csv" in result.stdout
    assert "data/sample/extra.parquet" not in result.stdout  # removed by the preset's null


def test_the_budget_preset_plans_three_folds_one_teacher_and_the_best_fold(workflow_copy):
    """The seed team's run: Llama alone on 3 folds, its logits in 5 shards, one student per fold,
    the best fold's adapter served (no averaging job reads the others' weights into one)."""
    with_placeholder_data(workflow_copy, [REPO / "config" / "presets" / "budget.yaml"])
    result = snakemake(workflow_copy, "-n", "--configfile", "config/presets/budget.yaml")
    assert job_counts(result.stdout) == {
        "prepare_data": 3,
        "make_folds": 1,
        "clean_folds": 1,
        "post_pretrain": 2,  # Llama and the student only
        "train_teacher": 3,
        "teacher_logits": 3 * 5,
        "gather_logits": 3,
        "heuristic_model": 3,
        **STUDENT_SIDE(3, holdout=False),
        "all": 1,
    }
    assert "results/teachers/qwen" not in result.stdout and "meta-llama/Llama-3.1-8B-Instruct" not in result.stdout


def test_a_run_with_unlocked_hub_models_plans_but_does_not_start(workflow_copy, tmp_path):
    """A dry run plans without the lock (no machine here can read the hub); the real run stops
    before its first job, naming the model and the command that writes the lock."""
    overlay = tmp_path / "hub.yaml"
    overlay.write_text("student: {model: google/gemma-2-9b-it}\n")
    assert "prepare_data" in job_counts(snakemake(workflow_copy, "-n", "--configfile", str(overlay)).stdout)
    result = snakemake(workflow_copy, "results/data/train.parquet", "--cores", "1", "--configfile", str(overlay), check=False)
    assert result.returncode != 0
    assert (
        f"google/gemma-2-9b-it not in the lock config/models.lock.json: run `arena-distill download --configfile {overlay}`"
        in result.stdout
    )
    assert not (workflow_copy / "results" / "data" / "train.parquet").exists()


def test_the_preset_starts_every_fold_run_from_its_post_pretrained_adapter(workflow_copy):
    """Post-pretraining is a classifier stage whose adapter feeds every teacher and student fold job."""
    preset_copy(workflow_copy)
    result = snakemake(workflow_copy, "-n", "--configfile", "config/presets/blackpearl.yaml")
    pretraining = planned_inputs(result.stdout, "post_pretrain")
    assert len(pretraining) == 3 and all("results/data/post_pretrain.parquet" in line for line in pretraining)
    teachers = planned_inputs(result.stdout, "train_teacher")
    assert len(teachers) == 10
    for teacher in ("llama", "qwen"):
        assert sum(f"results/models/{teacher}/post_pretrain/adapter" in line for line in teachers) == 5
    students = planned_inputs(result.stdout, "distill_student")
    assert len(students) == 5 and all("results/models/student/post_pretrain/adapter" in line for line in students)
    assert "/post_pretrained" not in result.stdout  # no merged post-pretrained model is planned


def test_preset_through_the_slurm_profile(workflow_copy):
    preset_copy(workflow_copy)
    result = snakemake(workflow_copy, "submission", "-n", "--profile", "profiles/slurm", "--configfile", "config/presets/blackpearl.yaml")
    counts = job_counts(result.stdout)
    assert counts["prepare_data"] == 3 and counts["distill_student"] == 5 and counts["submission"] == 1
    assert "evaluate" not in counts  # the submission target plans only what the submission needs


def test_missing_preset_data_is_the_only_complaint(tmp_path):
    copy = copy_workflow(tmp_path)
    result = snakemake(copy, "-n", "--configfile", "config/presets/blackpearl.yaml", check=False)
    assert result.returncode != 0
    preset = yaml.safe_load((REPO / "config" / "presets" / "blackpearl.yaml").read_text())
    paths = (preset["data"]["train"], preset["data"]["test"], preset["post_pretrain"]["data"])
    assert any(f"no such file: {path} (config key '" in result.stdout for path in paths)


def test_make_dryrun_preset_plans_the_real_dag_in_a_fresh_clone():
    """`make dryrun-preset` (placeholders in a temporary copy) with the SLURM profile."""
    result = subprocess.run(
        [sys.executable, "-m", "arena_distill.workflow.dryrun_preset", "--profile", "profiles/slurm", "submission"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "empty placeholder for data/kaggle/train.csv" in result.stdout
    counts = job_counts(result.stdout)
    assert counts["train_teacher"] == 10 and counts["submission"] == 1
    assert not (REPO / "data" / "kaggle").exists()  # nothing written into the clone


def test_the_rulegraph_is_mermaid_text(workflow_copy):
    result = snakemake(workflow_copy, "--rulegraph", "mermaid-js", "all")
    assert "flowchart" in result.stdout and "distill_student" in result.stdout and "score_holdout" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", "learning_rat=1"], "'learning_rat' was unexpected"),
        (["--config", "folds={'n': 'five', 'seed': 1}"], "'five' is not of type 'integer'"),
        (["--config", "student={'model': 'tiny:mamba'}"], "does not match"),
    ],
)
def test_bad_config_fails_naming_the_key(workflow_copy, args, message):
    result = snakemake(workflow_copy, "-n", *args, check=False)
    assert result.returncode != 0
    assert message in result.stdout
    assert len(result.stdout.splitlines()) < 40  # the key and the message, not a dump of the schema


@pytest.mark.parametrize(
    ("overlay", "message"),
    [
        ("folds: {n: 100000}", "100000 is greater than the maximum of 100"),
        (
            "quantize: {group_size: 7}",
            "GPTQ group size 7 does not divide the student's hidden_size 64, intermediate_size 256, heads × head_dim 64 "
            "(config key 'quantize.group_size')",
        ),
        (
            "predict: {max_lengths: [100000]}",
            "100000 tokens exceed the 2048 positions of model 'student' (config key 'predict.max_lengths')",
        ),
    ],
)
def test_values_the_models_cannot_use_fail_at_start_up(workflow_copy, tmp_path, overlay, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(overlay + "\n")
    result = snakemake(workflow_copy, "-n", "--configfile", str(bad), check=False)
    assert result.returncode != 0 and message in result.stdout, result.stdout[-2000:]
    assert len(result.stdout.splitlines()) < 40  # the message, not a page of schema


def test_unknown_nested_key(workflow_copy, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("teachers:\n  llama:\n    modle: tiny:llama\n")
    result = snakemake(workflow_copy, "-n", "--configfile", str(bad), check=False)
    assert result.returncode != 0 and "'modle' was unexpected" in result.stdout


def test_model_count_follows_config(workflow_copy, tmp_path):
    overlay = tmp_path / "one_teacher.yaml"
    overlay.write_text("teachers:\n  qwen: null\n")
    result = snakemake(workflow_copy, "-n", "--configfile", str(overlay))
    counts = job_counts(result.stdout)
    assert counts["init_model"] == 2  # llama + student
    assert counts["train_teacher"] == N_FOLDS


def test_post_pretraining_switches_off_or_is_supplied(workflow_copy, tmp_path):
    overlay = tmp_path / "no_pp.yaml"
    overlay.write_text("post_pretrain: {enabled: false}\nteachers: {qwen: {post_pretrained: given/qwen-adapter}}\n")
    result = snakemake(workflow_copy, "-n", "--configfile", str(overlay))
    counts = job_counts(result.stdout)
    assert "post_pretrain" not in counts and counts["distill_student"] == N_FOLDS  # nothing to compare with
    overlay.write_text("teachers: {llama: {post_pretrain: true}, qwen: {post_pretrained: given/qwen-adapter}}\n")
    result = snakemake(workflow_copy, "-n", "--configfile", str(overlay))
    assert job_counts(result.stdout)["post_pretrain"] == 2  # llama and the student; qwen's is given
    overlay.write_text("teachers: {llama: {post_pretrain: false}}\nstudent: {post_pretrain: false}\n")
    result = snakemake(workflow_copy, "-n", "--configfile", str(overlay))
    assert job_counts(result.stdout)["post_pretrain"] == 1  # qwen alone


def test_calibration_and_out_of_fold_logits_are_switches(workflow_copy, tmp_path):
    overlay = tmp_path / "calibrated.yaml"
    overlay.write_text("calibration: {enabled: true}\nteacher_logits: {rows: val, n_shards: 1}\n")
    result = snakemake(workflow_copy, "-n", "--configfile", str(overlay))
    counts = job_counts(result.stdout)
    assert counts["calibrate_teacher"] == 2 and counts["teacher_logits"] == counts["train_teacher"]
    # Out-of-fold logits: each student fold learns from every fold's teacher.
    student = result.stdout.split("rule distill_student:", 1)[1].split("rule ", 1)[0]
    assert all(f"results/teachers/llama/fold{fold}/logits.parquet" in student for fold in range(N_FOLDS))
    assert "results/teachers/qwen/calibration.json" in student


def test_supplied_teacher_logits_plan_no_teacher_rule(workflow_copy, tmp_path):
    overlay = tmp_path / "given.yaml"
    overlay.write_text("distill: {teacher_logits: {llama: given/llama.parquet, qwen: given/qwen.parquet}}\n")
    for name in ("llama", "qwen"):
        (workflow_copy / f"given/{name}.parquet").parent.mkdir(exist_ok=True)
        (workflow_copy / f"given/{name}.parquet").touch()
    counts = job_counts(snakemake(workflow_copy, "-n", "--configfile", str(overlay)).stdout)
    assert not {"train_teacher", "teacher_logits", "gather_logits", "calibrate_teacher"} & set(counts)
    assert counts["init_model"] == counts["post_pretrain"] == 1  # the student alone
    assert counts["distill_student"] == N_FOLDS and counts["evaluate"] == 1


def test_the_submission_calibration_is_fitted_on_what_the_config_names(workflow_copy, tmp_path):
    overlay = tmp_path / "calibration.yaml"
    overlay.write_text("predict: {calibration: symmetric, calibrate_on: oof}\n")
    result = snakemake(workflow_copy, "-n", "--configfile", str(overlay))
    fit = planned_inputs(result.stdout, "calibrate_submission")
    assert len(fit) == 1 and "results/student/fold1/val_logits.parquet" in fit[0] and "results/student/quantized" not in fit[0]
    assert job_counts(result.stdout)["prepare_data"] == 3  # the calibration rows are not read
    overlay.write_text("predict: {calibration: none}\n")
    counts = job_counts(snakemake(workflow_copy, "-n", "--configfile", str(overlay)).stdout)
    assert "calibrate_submission" not in counts and counts["predict"] == 1
    overlay.write_text("data: {calibration: null}\n")
    result = snakemake(workflow_copy, "-n", "--configfile", str(overlay), check=False)
    assert result.returncode != 0 and "config key 'data.calibration'" in result.stdout


def test_post_pretraining_overrides_name_configured_models(workflow_copy, tmp_path):
    overlay = tmp_path / "models.yaml"
    overlay.write_text("post_pretrain: {models: {studnet: {epochs: 2}}}\n")
    result = snakemake(workflow_copy, "-n", "--configfile", str(overlay), check=False)
    assert result.returncode != 0 and "['studnet']" in result.stdout and "config key 'post_pretrain.models'" in result.stdout


def test_the_fresh_init_comparison_doubles_the_students(workflow_copy, tmp_path):
    overlay = tmp_path / "compare.yaml"
    overlay.write_text("post_pretrain: {compare_fresh_init: true}\n")
    result = snakemake(workflow_copy, "-n", "--configfile", str(overlay))
    assert job_counts(result.stdout)["distill_student"] == 2 * N_FOLDS
    assert "results/student_fresh_init/fold0/adapter" in " ".join(planned_inputs(result.stdout, "score_holdout"))


def test_lint_is_clean():
    result = snakemake(REPO, "--lint")
    assert "Congratulations" in result.stdout


def test_a_fold_ensemble_plans_the_same_jobs(workflow_copy, tmp_path):
    """`average.method: ensemble` keeps the DAG: the export rules carry every fold's model."""
    overlay = tmp_path / "ensemble.yaml"
    overlay.write_text("average: {method: ensemble}\n")
    default = job_counts(snakemake(workflow_copy, "-n").stdout)
    assert job_counts(snakemake(workflow_copy, "-n", "--configfile", str(overlay)).stdout) == default
