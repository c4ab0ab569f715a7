"""What each job reads, as named files: the bodies of the workflow's input functions.

Each function takes the run's `RunPlan` and the job's wildcard values and returns what its rule
declares as `input` (a list, or a dict that the rule unpacks into named inputs). Every file a
job opens is here, so Snakemake orders, reruns and stages it; nothing reaches a script as a
path in `params`. Standard library only.
"""

from __future__ import annotations

import glob
from typing import Any

from arena_distill.workflow import paths
from arena_distill.workflow.plan import RunPlan


def named(prefix: str, parts: dict[str, str | None]) -> dict[str, str]:
    """The built parts of `parts` as named inputs `<prefix>_<part>` (e.g. `base_init_adapter`)."""
    return {f"{prefix}_{part}": path for part, path in parts.items() if paths.built(path)}


def as_seen(prefix: str, parts: dict[str, str | None], job_input: Any) -> dict[str, str | None]:
    """`parts` as a job sees them: each built part read from the job's own `input` (where a
    storage plugin puts its local copy), the given ones as configured. For params functions
    `lambda wildcards, input: ...`, so no path reaches a script other than through its inputs."""
    return {part: job_input[key] if (key := f"{prefix}_{part}") in job_input.keys() else path for part, path in parts.items()}


def table_sources(plan: RunPlan, table: str) -> list[str]:
    data = plan.config["data"]
    if table == "train":
        return [data["train"], *data["extra"].values()]
    if table == "post_pretrain":
        return [plan.config["post_pretrain"]["data"]]
    return [data[table]]


def labelled_test(plan: RunPlan) -> dict[str, str]:
    """The labelled test rows when the config gives their labels: the models that score the
    holdout score them too."""
    labels = plan.config["data"].get("test_labels")
    return {"test": paths.table("test"), "test_labels": labels} if labels else {}


def judge(plan: RunPlan) -> dict[str, str]:
    """The judge's weights when this workflow builds them, and the labelled test rows."""
    model = plan.judge_model()
    return {**({"model": model} if paths.built(model) else {}), **labelled_test(plan)}


def distill(plan: RunPlan, run: str, fold: str) -> dict[str, Any]:
    """What a fold student starts from and learns from: its base, each teacher's logits (trained,
    supplied or heuristic) as `logits_<teacher>`, each calibration as `calibration_<teacher>`."""
    logits = {f"logits_{teacher}": files for teacher, files in plan.teacher_logit_tables(fold).items()}
    calibrations = {f"calibration_{teacher}": path for teacher, path in plan.teacher_calibrations().items()}
    return {**named("base", plan.student_base(run)), **logits, **calibrations}


def teacher_logits_seen(plan: RunPlan, fold: str, job_input: Any) -> dict[str, list[str]]:
    """teacher -> its logits tables, from a distill_student job's inputs (`distill`)."""
    return {teacher: list(job_input[f"logits_{teacher}"]) for teacher in plan.teacher_logit_tables(fold)}


def calibrations_seen(plan: RunPlan, job_input: Any) -> dict[str, str]:
    """teacher -> its calibration.json, from a distill_student job's inputs (`distill`)."""
    return {teacher: job_input[f"calibration_{teacher}"] for teacher in plan.teacher_calibrations()}


def calibration(plan: RunPlan) -> dict[str, Any]:
    """What the submission's calibration is fitted on: the final model scoring data.calibration,
    or the students' out-of-fold logits."""
    if plan.config["predict"]["calibrate_on"] == "oof":
        return {"oof": plan.student_val_logits()}
    return {"model": paths.QUANTIZED, "rows": paths.table("calibration")}


def calibration_fit(plan: RunPlan) -> dict[str, str]:
    """The submission's fitted calibration, when it is calibrated."""
    return {"calibration": paths.CALIBRATION_FIT} if plan.calibrating() else {}


def package(plan: RunPlan) -> dict[str, str]:
    """The exported student and its fitted calibration: together they are results/model."""
    return {"model": paths.QUANTIZED, **calibration_fit(plan)}


def kaggle(plan: RunPlan) -> dict[str, Any]:
    """The package's sources (the bundle builds its wheel from them) and, when the bundle
    carries other wheels, the wheelhouse they come from."""
    found = {"sources": sorted(glob.glob("src/arena_distill/**/*.py", recursive=True))}
    if plan.kaggle_wheels():
        found["wheelhouse"] = plan.config["kaggle"]["wheelhouse"]
    return found


def score_holdout(plan: RunPlan, scored: str) -> dict[str, Any]:
    """A saved model (the served one, calibration packaged, with the fit that also holds the
    calibrations compared with it), or fold adapters and their base; the labelled test rows
    when the config gives their labels."""
    test = labelled_test(plan)
    if scored == "merged":
        return {"model": paths.MERGED, **test}
    if scored == "submission":
        return {"model": paths.MODEL, **calibration_fit(plan), **test}
    run, part = scored.split("/")
    adapters = plan.student_adapters(run)
    if part != "average":
        adapters = [adapters[int(part.removeprefix("fold"))]]
    return {"adapters": adapters, **named("student_base", plan.base_of("student", fresh=run != "student")), **test}


def submission(plan: RunPlan) -> dict[str, list[str]]:
    """The student folds' out-of-fold logits when the submission is shrunk: its fit."""
    return {"student_val_logits": plan.student_val_logits()} if plan.config["predict"]["shrink"] else {}


def evaluate(plan: RunPlan) -> dict[str, Any]:
    """Out-of-fold logits, the submission, and the holdout scores when the run keeps a
    holdout: only then does the evaluation need a GPU job (score_holdout)."""
    config = plan.config
    fresh = "student_fresh_init" in plan.student_runs()
    found: dict[str, Any] = {
        **{f"teacher_val_logits_{teacher}": plan.teacher_val_logits(teacher) for teacher in plan.teachers()},
        "student_val_logits": plan.student_val_logits(),
        "fresh_init_val_logits": plan.student_val_logits("student_fresh_init") if fresh else [],
        "submission": paths.SUBMISSION,
        "heuristic_val_logits": plan.heuristic_files("val_logits"),
        "heuristic_scored": plan.heuristic_files("scored"),
        "heuristic_test_scored": plan.heuristic_files("scored_test") if config["data"].get("test_labels") else [],
    }
    if config["judge"]["enabled"]:
        found["judge_scored"] = paths.JUDGE_SCORED
    if config["folds"]["holdout"]:
        found["holdout"] = plan.holdout_scorings()
        found["holdout_probs"] = [path.removesuffix(".json") + ".parquet" for path in plan.holdout_scorings()]
    found.update(calibration_fit(plan))
    if config["data"].get("test_labels"):
        found["test_labels"] = config["data"]["test_labels"]
    return found


def teacher_val_logits_seen(plan: RunPlan, job_input: Any) -> dict[str, list[str]]:
    """teacher -> its folds' validation logits, from the evaluate job's inputs (`evaluate`)."""
    return {teacher: list(job_input[f"teacher_val_logits_{teacher}"]) for teacher in plan.teachers()}


def figures(plan: RunPlan) -> dict[str, Any]:
    """What the report's figures are drawn from: files the run has written, nothing rescored."""
    config = plan.config
    found: dict[str, Any] = {
        "metrics": paths.METRICS,
        "train": paths.table("train"),
        "folds": paths.CLEAN_FOLDS,
        "submission": paths.SUBMISSION,
        "student_val_logits": plan.student_val_logits(),
        "training_metrics": [path for panel in plan.training_runs().values() for path in panel.values()],
        "benchmarks": plan.benchmarks(),
    }
    if any(plan.post_pretraining(name) for name in plan.used_models()):
        found["post_pretrain"] = paths.table("post_pretrain")
    if "rows" in calibration(plan) and plan.calibrating():
        found["calibration"] = paths.table("calibration")
    if config["data"].get("test_labels"):
        found["test_labels"] = config["data"]["test_labels"]
    return found


def training_runs_seen(plan: RunPlan, metrics: Any) -> dict[str, dict[str, str]]:
    """`plan.training_runs()` with each path read from the figures job's `training_metrics`
    input, which lists them in the same order."""
    seen = iter(metrics)
    return {panel: {name: next(seen) for name in runs} for panel, runs in plan.training_runs().items()}
