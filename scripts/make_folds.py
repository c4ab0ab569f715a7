"""Rule make_folds: the train table -> results/folds/folds.json."""

import pandas as pd

from arena_distill.data.folds import make_folds
from arena_distill.io import write_json
from arena_distill.logs import script_logging

with script_logging(snakemake.log[0]) as log:
    params = snakemake.params.folds
    train = pd.read_parquet(snakemake.input[0], columns=["id", "label", "source", "group"])
    folds = make_folds(train, n=params["n"], seed=params["seed"], group_by=params.get("group_by"), holdout=params.get("holdout", 0.0))
    for fold in folds["folds"]:
        log.info("fold %d: %d train rows, %d val rows", fold["fold"], len(fold["train_ids"]), len(fold["val_ids"]))
    log.info("holdout: %d rows no fold trains on", len(folds["holdout_ids"]))
    write_json(folds, snakemake.output[0])
