"""Rule clean_folds: folds.json -> folds_clean.json without rows that cannot teach."""

import pandas as pd

from arena_distill.data.cleaning import DEFAULT_RULES, clean_folds
from arena_distill.io import read_json, write_json
from arena_distill.logs import script_logging

with script_logging(snakemake.log[0]):
    train = pd.read_parquet(snakemake.input.train)
    folds = read_json(snakemake.input.folds)
    cleaned = clean_folds(train, folds, rules=snakemake.params.clean.get("rules", DEFAULT_RULES))
    write_json(cleaned, snakemake.output[0])
