import importlib.util
import os
import sys

# Scripts and this file import the project library from src/ whatever environment runs them
# (the project venv, a conda env from envs/, the SLURM driver's), without installing it there.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        filter(
            None, [str(Path(workflow.basedir) / "src"), os.environ.get("PYTHONPATH")]
        )
    )
)

from arena_distill.modeling.model_lock import LOCK_ENV, read_lock
from arena_distill.workflow import inputs, paths
from arena_distill.workflow.config import validated
from arena_distill.workflow.config_checks import check_config
from arena_distill.workflow.download import check_models_locked
from arena_distill.workflow.plan import HOLDOUT_SCORED, STUDENT_RUNS, TABLES, RunPlan

# The schema with its defaults, then what the schema cannot see (a GPTQ group that does not
# divide the student's widths, a token budget beyond a model's positions, a switch naming what
# the run lacks): each fails here naming the key, not hours later.
validated(config, Path(workflow.basedir) / "config" / "schema.yaml")
check_config(config, workflow.basedir)
locked = {
    model: entry["revision"]
    for model, entry in read_lock(config["models_lock"]).items()
}
plan = RunPlan(config, locked)

# Every job that loads a hub model checks the cached snapshot against the lock first
# (arena_distill.modeling.model_lock); a real run (not a dry run) stops before its first job
# when a hub model of the run is not in the lock, with the command that writes it.
os.environ[LOCK_ENV] = str(Path(config["models_lock"]).resolve())


onstart:
    check_models_locked(config, " ".join(map(str, workflow.overwrite_configfiles)))


# Hugging Face's loading and saving bars redraw with carriage returns: in a job's log (a
# SLURM output file, the local run's terminal record) they are noise. A user who wants them
# sets HF_HUB_DISABLE_PROGRESS_BARS=0.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

# Local rules run inside the driving Snakemake's own interpreter. The SLURM driver
# environment (`make driver`: Snakemake and the executor plugin, no model libraries;
# docs/cluster.md "Where the driver runs") cannot run them, so under it every rule is a SLURM
# job, run in the job environment that the SLURM profile's precommand activates.
DRIVER_RUNS_RULES = importlib.util.find_spec("torch") is not None

# Among jobs ready together, the one with the longest chain still ahead of it starts first.
# On few cores (the demo's two) the teachers' trainings then run before the short jobs that
# fill the gaps (logits, heuristic model), so the fold students start together instead of one
# waiting for the other's last teacher; after them, the export chain goes before the holdout
# scoring that only the evaluation reads.
PRIORITY = {
    "prepare_data": 7,
    "make_folds": 7,
    "clean_folds": 7,
    "init_model": 6,
    "post_pretrain": 5,
    "train_teacher": 4,
    "teacher_logits": 3,
    "gather_logits": 3,
    "calibrate_teacher": 3,
    "heuristic_model": 3,
    "prompt_judge": 3,
    "distill_student": 2,
    "average_adapters": 1,
    "merge_student": 1,
    "quantize_student": 1,
    "calibrate_submission": 1,
    "package_model": 1,
}


wildcard_constraints:
    table="|".join(TABLES),
    student_run="|".join(STUDENT_RUNS),
    model="|".join(plan.models()),
    teacher="|".join(config["teachers"]),
    fold=r"\d+",
    shard=r"\d+",


# Input functions: thin wrappers that hand a job's wildcards to arena_distill.workflow.inputs.


def get_table_sources(wildcards):
    return inputs.table_sources(plan, wildcards.table)


def get_prepare_settings(wildcards):
    return plan.prepare_settings(wildcards.table)


def get_model_source(wildcards):
    return inputs.named("source", {"path": plan.source_path(wildcards.model)})


def get_base_inputs(wildcards):
    return inputs.named("base", plan.base_of(wildcards.teacher))


def get_merge_base_inputs(wildcards):
    return inputs.named("base", plan.base_of("student"))


def get_logit_shards(wildcards):
    return plan.logit_shards(wildcards.teacher, wildcards.fold)


def get_teacher_val_logits(wildcards):
    return plan.teacher_val_logits(wildcards.teacher)


def get_distill_inputs(wildcards):
    return inputs.distill(plan, wildcards.student_run, wildcards.fold)


def get_labelled_test(wildcards):
    return inputs.labelled_test(plan)


def get_judge_inputs(wildcards):
    return inputs.judge(plan)


def get_calibration_inputs(wildcards):
    return inputs.calibration(plan)


def get_package_inputs(wildcards):
    return inputs.package(plan)


def get_kaggle_inputs(wildcards):
    return inputs.kaggle(plan)


def get_score_holdout_inputs(wildcards):
    return inputs.score_holdout(plan, wildcards.scored)


def get_submission_inputs(wildcards):
    return inputs.submission(plan)


def get_evaluate_inputs(wildcards):
    return inputs.evaluate(plan)


def get_figures_inputs(wildcards):
    return inputs.figures(plan)
