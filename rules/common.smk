import os

from snakemake.utils import validate


def drop_removed_entries(mapping):
    """Config files merge recursively, so a preset removes an inherited entry with null."""
    for name in [name for name, value in (mapping or {}).items() if value is None]:
        del mapping[name]


drop_removed_entries(config.get("teachers"))
drop_removed_entries(config.get("data", {}).get("extra"))
validate(config, schema="../config/schema.yaml")

# Scripts import the project library from src/ whatever environment runs them (the
# project venv, a conda env from envs/, or a SLURM job), without installing it there.
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        filter(
            None, [str(Path(workflow.basedir) / "src"), os.environ.get("PYTHONPATH")]
        )
    )
)

TABLES = ["train", "test", "ut"]


def models():
    """Every model of the pipeline by name: the teachers and the student."""
    return {**config["teachers"], "student": config["student"]}


def tiny_models():
    return [
        name for name, spec in models().items() if spec["model"].startswith("tiny:")
    ]


def tables():
    return [table for table in TABLES if table != "ut" or config["data"].get("ut")]


def teachers():
    return list(config["teachers"])


def folds():
    return list(range(config["folds"]["n"]))


def shards():
    return list(range(config["teacher_logits"]["n_shards"]))


def model_slice(name, *keys):
    """Only the keys of model `name` a rule uses, so editing the others does not rerun it."""
    spec = models()[name]
    return {key: spec[key] for key in keys if key in spec}


def post_pretraining(name):
    """Whether the workflow post-pretrains model `name` (off, or supplied by the config)."""
    spec = models()[name]
    return config["post_pretrain"]["enabled"] and not spec.get("post_pretrained")


def source_path(name):
    """The model before post-pretraining: the built tiny model or the spec's path / hub id."""
    spec = models()[name]["model"]
    return f"results/models/{name}/base" if spec.startswith("tiny:") else spec


def base_of(name):
    """`{path, post_pretrained}` of the base later stages load for model `name`."""
    spec = models()[name]
    if post_pretraining(name):
        return {"path": f"results/models/{name}/post_pretrained"}
    return {"path": source_path(name), "post_pretrained": spec.get("post_pretrained")}


def workflow_files(base):
    """The parts of a base that a rule of this workflow builds (the rest are given)."""
    return [path for path in base.values() if path and path.startswith("results/")]


if config["post_pretrain"]["enabled"] and not config["data"].get("ut"):
    raise ValueError(
        "post_pretrain.enabled needs a UT corpus: set data.ut or post_pretrain.enabled: false (config key 'data.ut')"
    )


wildcard_constraints:
    table="|".join(TABLES),
    model="|".join(models()),
    teacher="|".join(teachers()),
    fold=r"\d+",
    shard=r"\d+",


def get_table_sources(wildcards):
    data = config["data"]
    if wildcards.table == "train":
        return [data["train"], *data["extra"].values()]
    return [data[wildcards.table]]


def get_prepare_params(wildcards):
    """Only the config a table depends on, so editing one table's config reruns that table."""
    data = config["data"]
    if wildcards.table == "train":
        return {"extra": list(data["extra"]), "bad_json": data["bad_json"]}
    if wildcards.table == "test":
        return {"bad_json": data["bad_json"]}
    return {}


def get_model_source(wildcards):
    return workflow_files({"path": source_path(wildcards.model)})


def get_base_inputs(wildcards):
    return workflow_files(base_of(wildcards.teacher))


def get_logit_shards(wildcards):
    return expand(
        "results/teachers/{teacher}/fold{fold}/logits/shard{shard}.parquet",
        teacher=wildcards.teacher,
        fold=wildcards.fold,
        shard=shards(),
    )


def get_teacher_val_logits(wildcards):
    return expand(
        "results/teachers/{teacher}/fold{fold}/val_logits.parquet",
        teacher=wildcards.teacher,
        fold=folds(),
    )


def checkpoint_dir(rule, *names):
    """Where a training job keeps its resumable state: outside its outputs, so Snakemake's
    cleanup of an interrupted job's outputs leaves it for the rerun to resume from."""
    return os.path.join("results", "checkpoints", rule, *names)


def get_final_outputs():
    outputs = expand("results/data/{table}.parquet", table=tables())
    outputs.append("results/folds/folds_clean.json")
    outputs += expand("results/models/{model}/base", model=tiny_models())
    outputs += expand(
        "results/models/{model}/post_pretrained",
        model=[name for name in models() if post_pretraining(name)],
    )
    outputs += expand(
        "results/teachers/{teacher}/fold{fold}/{file}",
        teacher=teachers(),
        fold=folds(),
        file=["metrics.json", "logits.parquet"],
    )
    if config["calibration"]["enabled"]:
        outputs += expand(
            "results/teachers/{teacher}/calibration.json", teacher=teachers()
        )
    return outputs
