"""Rule prompt_judge: a causal LM's votes on every test pair (the prediction table `predict`
writes) and on the holdout and labelled test rows (the per-row table `score_holdout` writes)."""

import pandas as pd
import torch

from arena_distill import LABELS
from arena_distill.baselines.prompt_judge import judge_rows, load_judge
from arena_distill.io import atomic_path, read_parquet
from arena_distill.logs import script_logging
from arena_distill.report.evaluation import PROBS, holdout_rows, labelled_test_rows

with script_logging(snakemake.log[0]) as log:
    torch.set_num_threads(snakemake.threads)
    model, tokenizer = load_judge(snakemake.params.model)
    settings = snakemake.params.judge
    test = read_parquet(snakemake.input.test)
    probs = judge_rows(model, tokenizer, test, **settings)
    predictions = pd.DataFrame({"id": test["id"].to_numpy()})
    predictions[list(LABELS)] = probs
    tables = []
    holdout = holdout_rows(snakemake.input.train, snakemake.input.folds)
    if len(holdout):
        table = pd.DataFrame({"rows": "holdout", "id": holdout["id"].to_numpy(), "label": holdout["label"].to_numpy()})
        table[PROBS] = judge_rows(model, tokenizer, holdout, **settings)
        tables.append(table)
    if "test_labels" in snakemake.input.keys():
        labelled = labelled_test_rows(snakemake.input.test, snakemake.input.test_labels)
        table = pd.DataFrame({"rows": "test", "id": labelled["id"].to_numpy(), "label": labelled["label"].to_numpy()})
        table[PROBS] = predictions.set_index("id").loc[labelled["id"], list(LABELS)].to_numpy()
        tables.append(table)
    scored = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["rows", "id", "label", *PROBS])
    for frame, path in ((predictions, snakemake.output.predictions), (scored, snakemake.output.scored)):
        with atomic_path(path) as tmp:
            frame.to_parquet(tmp, index=False)
    log.info("judged %d test and %d holdout pairs with %s", len(test), len(holdout), snakemake.params.model)
