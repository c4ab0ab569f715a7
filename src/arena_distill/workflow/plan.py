"""The run's topology as plain functions of the validated config: which models, teachers, folds,
shards and student runs a run has, what each job starts from, and which files each job reads.

`rules/common.smk` builds one `RunPlan` from Snakemake's config and its input functions are
thin wrappers over it; the capacity plan asks the same questions of the same object, so the
two cannot disagree. Standard library only: the SLURM driver's environment imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from arena_distill.export.kaggle_wheels import required_wheels
from arena_distill.workflow import paths

STUDENT_RUNS = ("student", "student_fresh_init")
TABLES = ("train", "test", "post_pretrain", "calibration")
HOLDOUT_SCORED = r"(student|student_fresh_init)/(fold\d+|average)|merged|submission"
"""What score_holdout scores, one job each: a student run's fold adapter or fold average, the
merged model, the exported (quantized) model."""


class RunPlan:
    """Questions about one run, answered from its config (validated, defaults filled)."""

    def __init__(self, config: Mapping[str, Any], locked: Mapping[str, str] | None = None):
        """`locked`: hub id -> the revision the run's lock pins (`model_lock.read_lock`)."""
        self.config = config
        self.locked = dict(locked or {})

    # -- models, teachers, folds --------------------------------------------------------------

    def models(self) -> dict[str, Mapping[str, Any]]:
        """Every configured model by name: the teachers and the student."""
        return {**self.config["teachers"], "student": self.config["student"]}

    def precomputed_teachers(self) -> dict[str, str]:
        """Teacher logits the config supplies (the distillation-only path), by teacher name."""
        return self.config["distill"].get("teacher_logits") or {}

    def teachers(self) -> list[str]:
        """The teachers this run trains: none when their logits are supplied."""
        return [] if self.precomputed_teachers() else list(self.config["teachers"])

    def used_models(self) -> list[str]:
        """The models this run builds on: the student and the teachers it trains."""
        return [*self.teachers(), "student"]

    def folds(self) -> list[int]:
        return list(range(self.config["folds"]["n"]))

    def shards(self) -> list[int]:
        return list(range(self.config["teacher_logits"]["n_shards"]))

    def model_slice(self, name: str, *keys: str) -> dict[str, Any]:
        """Only the keys of model `name` a rule uses, so editing the others does not rerun it."""
        spec = self.models()[name]
        return {key: spec[key] for key in keys if key in spec}

    def post_pretraining(self, name: str) -> bool:
        """Whether the run post-pretrains model `name` (off for all or for this model, or its
        adapter supplied by the config)."""
        spec = self.models()[name]
        return bool(self.config["post_pretrain"]["enabled"] and spec.get("post_pretrain", True) and not spec.get("post_pretrained"))

    def post_pretrain_settings(self, name: str) -> dict[str, Any]:
        """The training keys of the post_pretrain block under model `name`'s own overrides
        (the switches stay out of params)."""
        block = self.config["post_pretrain"]
        shared = {k: v for k, v in block.items() if k not in ("enabled", "data", "compare_fresh_init", "models")}
        return {**shared, **block.get("models", {}).get(name, {})}

    def source_path(self, name: str) -> str:
        """The model's weights: the built tiny model or the spec's path / hub id."""
        spec = self.models()[name]["model"]
        return paths.MODEL_BASE.format(model=name) if spec.startswith("tiny:") else spec

    def base_of(self, name: str, fresh: bool = False) -> dict[str, str | None]:
        """`{path, init_adapter}` a fine-tuning job of model `name` starts from: its weights and
        the LoRA it starts with (post-pretrained here, supplied, or none: a fresh one); and the
        `revision` the lock pins for a hub model, so that a new revision reruns the jobs on it."""
        if fresh:
            init = None
        elif self.post_pretraining(name):
            init = paths.post_pretrained_adapter(name)
        else:
            init = self.models()[name].get("post_pretrained")
        path = self.source_path(name)
        revision = {"revision": self.locked[path]} if path in self.locked else {}
        return {"path": path, "init_adapter": init, **revision}

    def student_runs(self) -> list[str]:
        """The student fold runs: from the post-pretrained LoRA and, when compared, from a fresh one."""
        compare = self.config["post_pretrain"]["compare_fresh_init"] and self.post_pretraining("student")
        return list(STUDENT_RUNS if compare else STUDENT_RUNS[:1])

    def student_base(self, run: str = "student") -> dict[str, str | None]:
        """The student's base for a fold run of `run`, or for the merge (`student`)."""
        return self.base_of("student", fresh=run == "student_fresh_init")

    def judge_model(self) -> str:
        """The judge's weights: a configured model's (by name), or the path / hub id given."""
        name = self.config["judge"]["model"]
        return self.source_path(name) if name in self.models() else name

    def calibrating(self) -> bool:
        """Whether the submission is calibrated post hoc (calibrate_submission runs)."""
        return self.config["predict"]["calibration"] != "none"

    def kaggle_wheels(self) -> list[str]:
        """The pinned wheels the Kaggle bundle carries beside the project's own."""
        return list(required_wheels(self.config["kaggle"], self.config["quantize"]["method"]))

    def prepare_settings(self, table: str) -> dict[str, Any]:
        """Only the config a table depends on, so editing one table's config reruns that table."""
        data = self.config["data"]
        if table == "train":
            return {"extra": list(data["extra"]), "bad_json": data["bad_json"]}
        return {"bad_json": data["bad_json"]}

    def distill_settings(self) -> dict[str, Any]:
        """The loss settings of distill_student (the teachers, supplied, trained or heuristic,
        travel as inputs), and `teacher_rows` when the teachers score only a subset of the rows
        (`teacher_logits.max_rows`): the student then trains on that subset."""
        settings = {k: v for k, v in self.config["distill"].items() if k not in ("teacher_logits", "heuristic_teacher")}
        subset = self.config["teacher_logits"].get("max_rows")
        return {**settings, "teacher_rows": subset} if subset else settings

    def predict_settings(self) -> dict[str, Any]:
        return {"max_lengths": [self.config["text"]["test_max_length"]], **self.config["predict"]}

    def model_card_recipe(self) -> dict[str, Any]:
        """How the exported model was made, for its model card (README.md in results/model)."""
        config = self.config
        return {
            "student": config["student"]["model"],
            "teachers": {name: config["teachers"][name]["model"] for name in self.teachers()}
            or {name: "precomputed logits" for name in self.precomputed_teachers()},
            "folds": config["folds"]["n"],
            "average": config["average"]["method"],
            "post_pretrain": self.post_pretraining("student"),
            "data": config["data"]["train"],
            "text": config["text"],
        }

    # -- files of many jobs ---------------------------------------------------------------------

    def teacher_val_logits(self, teacher: str) -> list[str]:
        return [paths.teacher_file(teacher, fold, "val_logits.parquet") for fold in self.folds()]

    def student_val_logits(self, run: str = "student") -> list[str]:
        return [paths.student_file(run, fold, "val_logits.parquet") for fold in self.folds()]

    def student_adapters(self, run: str = "student") -> list[str]:
        return [paths.student_file(run, fold, "adapter") for fold in self.folds()]

    def heuristic_files(self, name: str) -> list[str]:
        """One file of every fold's heuristic features model."""
        return [paths.heuristic_file(name, fold) for fold in self.folds()]

    def logit_shards(self, teacher: str, fold: int | str) -> list[str]:
        return [paths.logit_shard(teacher, fold, shard) for shard in self.shards()]

    def teacher_logit_tables(self, fold: int | str) -> dict[str, list[str]]:
        """teacher -> the logits tables the student of `fold` learns from. In-sample logits (the
        original) come from the same fold's teacher; out-of-fold ones from every fold's teacher,
        each covering its own validation rows."""
        logit_folds = [fold] if self.config["teacher_logits"]["rows"] == "train" else self.folds()
        heuristic = (
            {"heuristic": [paths.heuristic_file("logits", f) for f in logit_folds]} if self.config["distill"]["heuristic_teacher"] else {}
        )
        supplied = self.precomputed_teachers()
        if supplied:
            return {**{name: [path] for name, path in supplied.items()}, **heuristic}
        trained = {teacher: [paths.teacher_file(teacher, f, "logits.parquet") for f in logit_folds] for teacher in self.teachers()}
        return {**trained, **heuristic}

    def teacher_calibrations(self) -> dict[str, str]:
        """teacher -> calibration.json, when calibration is on (never for supplied logits)."""
        if not self.config["calibration"]["enabled"]:
            return {}
        return {teacher: paths.TEACHER_CALIBRATION.format(teacher=teacher) for teacher in self.teachers()}

    def holdout_scored(self) -> list[str]:
        """What score_holdout scores, one job each: every student fold as soon as it is trained,
        the merged and the exported model; with the fresh-init comparison also its folds and
        their average (the post-pretrained average is the merged model)."""
        scored = [f"{run}/fold{fold}" for run in self.student_runs() for fold in self.folds()]
        if "student_fresh_init" in self.student_runs():
            scored.append("student_fresh_init/average")
        return [*scored, "merged", "submission"]

    def holdout_scorings(self) -> list[str]:
        return [paths.holdout_scores(name) for name in self.holdout_scored()]

    def training_runs(self) -> dict[str, dict[str, str]]:
        """The metrics file of every training run, by report panel and run name: each model's
        post-pretraining, the teachers' and the students' fold runs."""
        runs: dict[str, dict[str, str]] = {"teachers": {}, "student": {}}
        for name in self.used_models():
            if self.post_pretraining(name):
                panel = "student" if name == "student" else "teachers"
                runs[panel][f"{name} post-pretraining"] = f"{paths.POST_PRETRAIN.format(model=name)}/metrics.json"
        for teacher in self.teachers():
            for fold in self.folds():
                runs["teachers"][f"{teacher} fold {fold}"] = paths.teacher_file(teacher, fold, "metrics.json")
        for run in self.student_runs():
            for fold in self.folds():
                runs["student"][f"{run} fold {fold}"] = paths.student_file(run, fold, "metrics.json")
        return runs

    def benchmarks(self) -> list[str]:
        """The `benchmark:` file of every job of the run that has one: what the report's resource
        figure reads. The same jobs the rules plan (a file listed here that no planned job writes
        would add a job, which the DAG snapshots would show)."""
        judge = self.config["judge"]
        built = [name for name in self.models() if paths.built(self.source_path(name))]
        needed = set(self.used_models()) | ({judge["model"]} if judge["enabled"] else set())
        jobs = [("init_model", name) for name in built if name in needed]
        jobs += [("post_pretrain", name) for name in self.used_models() if self.post_pretraining(name)]
        for teacher in self.teachers():
            jobs += [("train_teacher", teacher, f"fold{fold}") for fold in self.folds()]
            jobs += [("teacher_logits", teacher, f"fold{fold}", f"shard{shard}") for fold in self.folds() for shard in self.shards()]
        jobs += [("heuristic_model", f"fold{fold}") for fold in self.folds()]
        jobs += [("distill_student", run, f"fold{fold}") for run in self.student_runs() for fold in self.folds()]
        jobs += [("merge_student",), ("quantize_student",), ("predict",)]
        jobs += [("calibrate_submission",)] * self.calibrating() + [("prompt_judge",)] * bool(judge["enabled"])
        if self.config["folds"]["holdout"]:
            jobs += [("score_holdout", *scored.split("/")) for scored in self.holdout_scored()]
        return [paths.benchmark(*job) for job in jobs]

    def figures(self) -> dict[str, str]:
        return {name: paths.figure(name) for name in paths.FIGURE_NAMES}

    def final_outputs(self) -> list[str]:
        """Everything `all` builds: the submission, the served model and the evaluation."""
        return [paths.SUBMISSION, paths.MODEL, paths.METRICS, paths.SUMMARY, *self.figures().values()]
