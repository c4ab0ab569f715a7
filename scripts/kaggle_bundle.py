"""Rule kaggle_bundle: the served model, the project's wheel and the wheels the Kaggle image lacks
-> results/kaggle, with the time budget of the competition's test set printed."""

import sys
import tempfile
from pathlib import Path

import pandas as pd

from arena_distill.errors import ConfigError
from arena_distill.export.kaggle_bundle import build_project_wheel, competition_budget, kaggle_bundle
from arena_distill.export.kaggle_wheels import find_wheels
from arena_distill.logs import script_logging
from arena_distill.modeling.flops import Shape
from arena_distill.workflow.memory_model import model_config

with script_logging(snakemake.log[0]) as log:
    predict = snakemake.params.predict
    for key in ("shrink", "no_ties"):
        if predict[key]:
            raise ConfigError(
                "the Kaggle bundle scores as results/model does; this post-processing is applied by the submission rule only",
                key=f"predict.{key}",
            )
    wheels = find_wheels(snakemake.input.get("wheelhouse", "."), snakemake.params.wheels)
    train = pd.read_parquet(snakemake.input.train).sample(frac=1.0, random_state=0).head(5000)
    shape = Shape.of(model_config(snakemake.params.student, "student.model", snakemake.params.tokenizer).to_dict())
    budget = competition_budget(shape, train, snakemake.params.text, predict)
    with tempfile.TemporaryDirectory() as tmp:
        project = build_project_wheel(".", snakemake.input.sources, Path(tmp))
        manifest = kaggle_bundle(snakemake.input.model, snakemake.output[0], [project, *wheels], budget)
    log.info("bundled %s with %s", snakemake.input.model, manifest["wheels"])
    log.info("time budget: %s", budget.line())
    print(f"kaggle_bundle: {budget.line()}", file=sys.stderr)
