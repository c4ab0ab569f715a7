"""Where every file of a run lives, written once: the rules' outputs and the input functions
that point at them both come from here.

Plain strings relative to the workflow directory, as Snakemake wants them; a `{name}` left in
a pattern is a rule's wildcard. Standard library only: the workflow imports this when it
starts, in the SLURM driver's environment too.
"""

from __future__ import annotations

RESULTS = "results"

TABLE = "results/data/{table}.parquet"
FOLDS = "results/folds/folds.json"
CLEAN_FOLDS = "results/folds/folds_clean.json"

MODEL_BASE = "results/models/{model}/base"
POST_PRETRAIN = "results/models/{model}/post_pretrain"

TEACHER_FOLD = "results/teachers/{teacher}/fold{fold}"
TEACHER_CALIBRATION = "results/teachers/{teacher}/calibration.json"

HEURISTIC_FOLD = "results/heuristic/fold{fold}"
HEURISTIC_FILES = ("logits", "val_logits", "scored", "scored_test")
"""The parquet tables a fold's heuristic features model writes."""

STUDENT_FOLD = "results/{student_run}/fold{fold}"
AVERAGED = "results/student/averaged"
MERGED = "results/student/merged"
QUANTIZED = "results/student/quantized"
CALIBRATION_FIT = "results/calibration/calibration.json"
MODEL = "results/model"
PREDICTIONS = "results/predictions/test.parquet"
SUBMISSION = "results/submission.csv"

JUDGE_PREDICTIONS = "results/judge/predictions.parquet"
JUDGE_SCORED = "results/judge/scored.parquet"
HOLDOUT = "results/eval/holdout/{scored}"
METRICS = "results/eval/metrics.json"
SUMMARY = "results/eval/summary.md"
BENCHMARKS = "results/benchmarks"
TENSORBOARD = "results/tensorboard"
FIGURE = "results/report/{name}.png"
FIGURE_NAMES = (
    "data_labels",
    "teacher_curves",
    "student_curves",
    "cv",
    "reliability",
    "confusion",
    "position_bias",
    "class_shares",
    "job_resources",
)
KAGGLE = "results/kaggle"


def built(path: str | None) -> bool:
    """Whether a rule of this workflow builds `path` (else the config gives it: a hub id, a file)."""
    return bool(path) and path.startswith(f"{RESULTS}/")


def table(name: str) -> str:
    return TABLE.format(table=name)


def post_pretrained_adapter(model: str) -> str:
    return f"{POST_PRETRAIN.format(model=model)}/adapter"


def teacher_file(teacher: str, fold: int | str, name: str) -> str:
    """A file of a teacher's fold run: adapter, metrics.json, val_logits.parquet, logits.parquet."""
    return f"{TEACHER_FOLD.format(teacher=teacher, fold=fold)}/{name}"


def logit_shard(teacher: str, fold: int | str, shard: int | str) -> str:
    return teacher_file(teacher, fold, f"logits/shard{shard}.parquet")


def heuristic_file(name: str, fold: int | str) -> str:
    """One of `HEURISTIC_FILES` (or model.json, metrics.json) of a fold's heuristic model."""
    suffix = name if "." in name else f"{name}.parquet"
    return f"{HEURISTIC_FOLD.format(fold=fold)}/{suffix}"


def student_file(run: str, fold: int | str, name: str) -> str:
    """A file of a student fold run (`student` or `student_fresh_init`)."""
    return f"{STUDENT_FOLD.format(student_run=run, fold=fold)}/{name}"


def holdout_scores(scored: str, suffix: str = ".json") -> str:
    return HOLDOUT.format(scored=scored) + suffix


def figure(name: str) -> str:
    return FIGURE.format(name=name)


def log(rule: str, *names: str) -> str:
    """The log of a job: results/logs/<rule>[/<name>...].log."""
    return "/".join([RESULTS, "logs", rule, *names]) + ".log"


def benchmark(rule: str, *names: str) -> str:
    """The benchmark table of a job: results/benchmarks/<rule>[/<name>...].tsv."""
    return "/".join([BENCHMARKS, rule, *names]) + ".tsv"


def curves_dir(rule: str, *names: str) -> str:
    """Where a training job writes its TensorBoard curves (`tensorboard --logdir results/tensorboard`):
    outside its outputs, so a requeued job appends to them instead of starting them over."""
    return "/".join([TENSORBOARD, rule, *names])


def checkpoint_dir(rule: str, *names: str) -> str:
    """Where a training job keeps its resumable state: outside its outputs, so Snakemake's
    cleanup of an interrupted job's outputs leaves it for the rerun to resume from."""
    return "/".join([RESULTS, "checkpoints", rule, *names])
