import glob
import importlib.util
import os
import sys

from jsonschema import ValidationError
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate


def drop_removed_entries(mapping):
    """Config files merge recursively, so a preset removes an inherited entry with null."""
    for name in [name for name, value in (mapping or {}).items() if value is None]:
        del mapping[name]


def validate_config(config):
    """The schema check with defaults filled, failing in one line that names the key (the
    library's own message also prints the whole schema)."""
    try:
        validate(config, schema="../config/schema.yaml")
    except WorkflowError as error:
        cause = error.__context__
        if not isinstance(cause, ValidationError):
            raise
        key = ".".join(map(str, cause.absolute_path)) or "(top level)"
        raise ValueError(
            f"invalid config: {cause.message} (config key '{key}')"
        ) from None


drop_removed_entries(config.get("teachers"))
drop_removed_entries(config.get("data", {}).get("extra"))
validate_config(config)

# What the schema cannot see (a GPTQ group that does not divide the student's widths, a
# token budget beyond a model's positions) fails here, naming the key, not hours later.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from arena_distill.workflow.config_checks import check_config
from arena_distill.export.kaggle_wheels import required_wheels

check_config(config, workflow.basedir)

# Hugging Face's loading and saving bars redraw with carriage returns: in a job's log (a
# SLURM output file, the local run's terminal record) they are noise. A user who wants them
# sets HF_HUB_DISABLE_PROGRESS_BARS=0.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

# Scripts import the project library from src/ whatever environment runs them (the
# project venv, a conda env from envs/, or a SLURM job), without installing it there.
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        filter(
            None, [str(Path(workflow.basedir) / "src"), os.environ.get("PYTHONPATH")]
        )
    )
)

# Local rules run inside the driving Snakemake's own interpreter. The SLURM driver
# environment (`make driver`: Snakemake and the executor plugin, no model libraries; README
# "Where the driver runs") cannot run them, so under it every rule is a SLURM job, run in the
# job environment that the SLURM profile's precommand activates.
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

TABLES = ["train", "test", "post_pretrain", "calibration"]
STUDENT_RUNS = ["student", "student_fresh_init"]


def models():
    """Every configured model by name: the teachers and the student."""
    return {**config["teachers"], "student": config["student"]}


def used_models():
    """The models this run builds on: the student and the teachers it trains."""
    return [*teachers(), "student"]


def precomputed_teachers():
    """Teacher logits the config supplies (the distillation-only path), by teacher name."""
    return config["distill"].get("teacher_logits") or {}


def teachers():
    """The teachers this workflow trains: none when their logits are supplied."""
    return [] if precomputed_teachers() else list(config["teachers"])


def folds():
    return list(range(config["folds"]["n"]))


def shards():
    return list(range(config["teacher_logits"]["n_shards"]))


def model_slice(name, *keys):
    """Only the keys of model `name` a rule uses, so editing the others does not rerun it."""
    spec = models()[name]
    return {key: spec[key] for key in keys if key in spec}


def post_pretraining(name):
    """Whether the workflow post-pretrains model `name` (off for all or for this model, or
    its adapter supplied by the config)."""
    spec = models()[name]
    return (
        config["post_pretrain"]["enabled"]
        and spec.get("post_pretrain", True)
        and not spec.get("post_pretrained")
    )


def source_path(name):
    """The model's weights: the built tiny model or the spec's path / hub id."""
    spec = models()[name]["model"]
    return f"results/models/{name}/base" if spec.startswith("tiny:") else spec


def post_pretrained_adapter(name):
    return f"results/models/{name}/post_pretrain/adapter"


def base_of(name, fresh=False):
    """`{path, init_adapter}` a fine-tuning job of model `name` starts from: its weights and
    the LoRA it starts with (post-pretrained here, supplied, or none: a fresh one)."""
    if fresh:
        init = None
    elif post_pretraining(name):
        init = post_pretrained_adapter(name)
    else:
        init = models()[name].get("post_pretrained")
    return {"path": source_path(name), "init_adapter": init}


def workflow_files(base):
    """The parts of a base that a rule of this workflow builds (the rest are given)."""
    return [path for path in base.values() if path and path.startswith("results/")]


def post_pretrain_settings(name):
    """The training keys of the post_pretrain block under model `name`'s own overrides
    (the switches stay out of params)."""
    block = config["post_pretrain"]
    shared = {
        k: v
        for k, v in block.items()
        if k not in ("enabled", "data", "compare_fresh_init", "models")
    }
    return {**shared, **block.get("models", {}).get(name, {})}


def student_runs():
    """The student fold runs: from the post-pretrained LoRA and, when compared, from a fresh one."""
    compare = config["post_pretrain"]["compare_fresh_init"] and post_pretraining(
        "student"
    )
    return STUDENT_RUNS if compare else STUDENT_RUNS[:1]


unknown = set(config["post_pretrain"].get("models", {})) - set(models())
if unknown:
    raise ValueError(
        f"post_pretrain.models names {sorted(unknown)}, which are not models of this config (config key 'post_pretrain.models')"
    )

if any(map(post_pretraining, used_models())) and not config["post_pretrain"].get(
    "data"
):
    raise ValueError(
        "post-pretraining needs labelled pairs: set post_pretrain.data or post_pretrain.enabled: false (config key 'post_pretrain.data')"
    )


wildcard_constraints:
    table="|".join(TABLES),
    student_run="|".join(STUDENT_RUNS),
    model="|".join(models()),
    teacher="|".join(config["teachers"]),
    fold=r"\d+",
    shard=r"\d+",


def get_table_sources(wildcards):
    data = config["data"]
    if wildcards.table == "train":
        return [data["train"], *data["extra"].values()]
    if wildcards.table == "post_pretrain":
        return [config["post_pretrain"]["data"]]
    return [data[wildcards.table]]


def get_prepare_params(wildcards):
    """Only the config a table depends on, so editing one table's config reruns that table."""
    data = config["data"]
    if wildcards.table == "train":
        return {"extra": list(data["extra"]), "bad_json": data["bad_json"]}
    return {"bad_json": data["bad_json"]}


def get_model_source(wildcards):
    return workflow_files({"path": source_path(wildcards.model)})


def get_base_inputs(wildcards):
    return workflow_files(base_of(wildcards.teacher))


def student_base(wildcards):
    """The student's base for a fold run (`student_run`) or for the merge (post-pretrained)."""
    run = getattr(wildcards, "student_run", "student")
    return base_of("student", fresh=run == "student_fresh_init")


def get_student_base_inputs(wildcards):
    return workflow_files(student_base(wildcards))


def get_logit_shards(wildcards):
    return expand(
        "results/teachers/{teacher}/fold{fold}/logits/shard{shard}.parquet",
        teacher=wildcards.teacher,
        fold=wildcards.fold,
        shard=shards(),
    )


def teacher_val_logits(teacher):
    return expand(
        "results/teachers/{teacher}/fold{fold}/val_logits.parquet",
        teacher=teacher,
        fold=folds(),
    )


def get_teacher_val_logits(wildcards):
    return teacher_val_logits(wildcards.teacher)


def get_teacher_logit_tables(wildcards):
    """teacher -> the logits tables the student of fold `wildcards.fold` learns from.

    In-sample logits (the original) come from the same fold's teacher; out-of-fold ones
    from every fold's teacher, each covering its own validation rows.
    """
    logit_folds = (
        [wildcards.fold] if config["teacher_logits"]["rows"] == "train" else folds()
    )
    heuristic = (
        {"heuristic": expand(HEURISTIC_FILES["logits"], fold=logit_folds)}
        if config["distill"]["heuristic_teacher"]
        else {}
    )
    supplied = precomputed_teachers()
    if supplied:
        return {**{name: [path] for name, path in supplied.items()}, **heuristic}
    return {
        **{
            teacher: expand(
                "results/teachers/{teacher}/fold{fold}/logits.parquet",
                teacher=teacher,
                fold=logit_folds,
            )
            for teacher in teachers()
        },
        **heuristic,
    }


HEURISTIC_FILES = {
    name: f"results/heuristic/fold{{fold}}/{name}.parquet"
    for name in ("logits", "val_logits", "scored", "scored_test")
}


def heuristic_files(name):
    """One file of every fold's heuristic features model (`HEURISTIC_FILES`)."""
    return expand(HEURISTIC_FILES[name], fold=folds())


def labelled_test_inputs(wildcards=None):
    """The labelled test rows when the config gives their labels: the models that score the
    holdout score them too."""
    if config["data"].get("test_labels"):
        return {
            "test": "results/data/test.parquet",
            "test_labels": config["data"]["test_labels"],
        }
    return {}


def judge_model():
    """The judge's weights: a configured model's (by name), or the path / hub id given."""
    name = config["judge"]["model"]
    return source_path(name) if name in models() else name


def get_judge_inputs(wildcards):
    """The judge's weights when this workflow builds them, and the labelled test rows."""
    model = judge_model()
    built = {"model": model} if model.startswith("results/") else {}
    return {**built, **labelled_test_inputs()}


def get_teacher_calibrations():
    """teacher -> calibration.json, when calibration is on (never for supplied logits)."""
    if not config["calibration"]["enabled"]:
        return {}
    return {
        teacher: f"results/teachers/{teacher}/calibration.json"
        for teacher in teachers()
    }


def get_distill_inputs(wildcards):
    tables = get_teacher_logit_tables(wildcards)
    return {
        "logits": [path for paths in tables.values() for path in paths],
        "calibrations": list(get_teacher_calibrations().values()),
    }


def student_distill_params():
    """The loss settings of distill_student (the teachers, supplied, trained or heuristic,
    travel as inputs)."""
    return {
        k: v
        for k, v in config["distill"].items()
        if k not in ("teacher_logits", "heuristic_teacher")
    }


def predict_params():
    return {
        "max_lengths": [config["text"]["test_max_length"]],
        **config["predict"],
    }


def model_card_recipe():
    """How the exported model was made, for its model card (README.md in results/model)."""
    return {
        "student": config["student"]["model"],
        "teachers": {name: config["teachers"][name]["model"] for name in teachers()}
        or {name: "precomputed logits" for name in precomputed_teachers()},
        "folds": config["folds"]["n"],
        "average": config["average"]["method"],
        "post_pretrain": post_pretraining("student"),
        "data": config["data"]["train"],
        "text": config["text"],
    }


def student_val_logits(run="student"):
    return expand("results/{run}/fold{fold}/val_logits.parquet", run=run, fold=folds())


def student_adapters(run="student"):
    return expand("results/{run}/fold{fold}/adapter", run=run, fold=folds())


def calibrating():
    """Whether the submission is calibrated post hoc (calibrate_submission runs)."""
    return config["predict"]["calibration"] != "none"


def get_calibration_inputs(wildcards):
    """What the calibration is fitted on: the final model scoring data.calibration, or the
    students' out-of-fold logits."""
    if config["predict"]["calibrate_on"] == "oof":
        return {"oof": student_val_logits()}
    return {
        "model": "results/student/quantized",
        "rows": "results/data/calibration.parquet",
    }


def calibration_fit():
    """The submission's fitted calibration, when it is calibrated."""
    return (
        {"calibration": "results/calibration/calibration.json"} if calibrating() else {}
    )


def get_package_inputs(wildcards):
    """The exported student and its fitted calibration: together they are results/model."""
    return {"model": "results/student/quantized", **calibration_fit()}


if (
    calibrating()
    and config["predict"]["calibrate_on"] == "calibration_data"
    and not config["data"].get("calibration")
):
    raise ValueError(
        "predict.calibrate_on: calibration_data needs labelled rows: set data.calibration, calibrate_on: oof or predict.calibration: none (config key 'data.calibration')"
    )


# What score_holdout scores, one job each: a student run's fold adapter or fold average, the
# merged model, the exported (quantized) model.
HOLDOUT_SCORED = r"(student|student_fresh_init)/(fold\d+|average)|merged|submission"


def kaggle_wheels():
    """The pinned wheels the Kaggle bundle carries beside the project's own."""
    return list(required_wheels(config["kaggle"], config["quantize"]["method"]))


def get_kaggle_inputs(wildcards):
    """The package's sources (the bundle builds its wheel from them) and, when the bundle
    carries other wheels, the wheelhouse they come from."""
    inputs = {"sources": sorted(glob.glob("src/arena_distill/**/*.py", recursive=True))}
    if kaggle_wheels():
        inputs["wheelhouse"] = config["kaggle"]["wheelhouse"]
    return inputs


def holdout_scorings():
    """Every student fold as soon as it is trained, the merged and the exported model; with the
    fresh-init comparison also its folds and their average (the post-pretrained average is
    the merged model)."""
    scored = [f"{run}/fold{fold}" for run in student_runs() for fold in folds()]
    if "student_fresh_init" in student_runs():
        scored.append("student_fresh_init/average")
    return [
        f"results/eval/holdout/{name}.json"
        for name in [*scored, "merged", "submission"]
    ]


def get_score_holdout_inputs(wildcards):
    """A saved model (the served one, calibration packaged, with the fit that also holds the
    calibrations compared with it), or fold adapters and their base; the labelled test rows
    when the config gives their labels."""
    test = labelled_test_inputs()
    if wildcards.scored == "merged":
        return {"model": "results/student/merged", **test}
    if wildcards.scored == "submission":
        return {"model": "results/model", **calibration_fit(), **test}
    run, part = wildcards.scored.split("/")
    adapters = student_adapters(run)
    if part != "average":
        adapters = [adapters[int(part.removeprefix("fold"))]]
    return {
        "adapters": adapters,
        "student_base": workflow_files(base_of("student", fresh=run != "student")),
        **test,
    }


def get_submission_inputs(wildcards):
    """The student folds' out-of-fold logits when the submission is shrunk: its fit."""
    if config["predict"]["shrink"]:
        return {"student_val_logits": student_val_logits()}
    return {}


def get_evaluate_inputs(wildcards):
    """Out-of-fold logits, the submission, and the holdout scores when the run keeps a
    holdout: only then does the evaluation need a GPU job (score_holdout)."""
    inputs = {
        "teacher_val_logits": [
            path for teacher in teachers() for path in teacher_val_logits(teacher)
        ],
        "student_val_logits": student_val_logits(),
        "fresh_init_val_logits": (
            student_val_logits("student_fresh_init")
            if "student_fresh_init" in student_runs()
            else []
        ),
        "submission": "results/submission.csv",
        "heuristic_val_logits": heuristic_files("val_logits"),
        "heuristic_scored": heuristic_files("scored"),
        "heuristic_test_scored": (
            heuristic_files("scored_test") if config["data"].get("test_labels") else []
        ),
    }
    if config["judge"]["enabled"]:
        inputs["judge_scored"] = "results/judge/scored.parquet"
    if config["folds"]["holdout"]:
        inputs["holdout"] = holdout_scorings()
        inputs["holdout_probs"] = [
            path.removesuffix(".json") + ".parquet" for path in holdout_scorings()
        ]
    inputs.update(calibration_fit())
    if config["data"].get("test_labels"):
        inputs["test_labels"] = config["data"]["test_labels"]
    return inputs


FIGURES = {
    name: f"results/report/{name}.png"
    for name in (
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
}


def training_runs():
    """The metrics file of every training run, by report panel and run name: each model's
    post-pretraining, the teachers' and the students' fold runs."""
    runs = {"teachers": {}, "student": {}}
    for name in used_models():
        if post_pretraining(name):
            panel = "student" if name == "student" else "teachers"
            runs[panel][
                f"{name} post-pretraining"
            ] = f"results/models/{name}/post_pretrain/metrics.json"
    for teacher in teachers():
        for fold in folds():
            runs["teachers"][
                f"{teacher} fold {fold}"
            ] = f"results/teachers/{teacher}/fold{fold}/metrics.json"
    for run in student_runs():
        for fold in folds():
            runs["student"][
                f"{run} fold {fold}"
            ] = f"results/{run}/fold{fold}/metrics.json"
    return runs


def get_figures_inputs(wildcards):
    """What the report's figures are drawn from: files the run has written, nothing rescored."""
    inputs = {
        "metrics": "results/eval/metrics.json",
        "train": "results/data/train.parquet",
        "folds": "results/folds/folds_clean.json",
        "submission": "results/submission.csv",
        "student_val_logits": student_val_logits(),
        "training_metrics": [
            path for panel in training_runs().values() for path in panel.values()
        ],
    }
    if any(post_pretraining(name) for name in used_models()):
        inputs["post_pretrain"] = "results/data/post_pretrain.parquet"
    if "rows" in get_calibration_inputs(wildcards) and calibrating():
        inputs["calibration"] = "results/data/calibration.parquet"
    if config["data"].get("test_labels"):
        inputs["test_labels"] = config["data"]["test_labels"]
    return inputs


def checkpoint_dir(rule, *names):
    """Where a training job keeps its resumable state: outside its outputs, so Snakemake's
    cleanup of an interrupted job's outputs leaves it for the rerun to resume from."""
    return os.path.join("results", "checkpoints", rule, *names)


def get_final_outputs():
    """Everything `all` builds: the submission, the served model and the evaluation."""
    return [
        "results/submission.csv",
        "results/model",
        "results/eval/metrics.json",
        "results/eval/summary.md",
        *FIGURES.values(),
    ]
