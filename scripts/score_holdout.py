"""Rule score_holdout: one model on the holdout prompts -> results/eval/holdout/{scored}.json,
and its TTA probabilities per labelled row (holdout and labelled test rows) -> {scored}.parquet.

A student fold adapter (or a fold average) is merged into its base; the merged and the
exported model are loaded from disk; the exported one is also reported as submitted.
"""

import pandas as pd
import torch

from arena_distill.io import atomic_path, read_json, write_json
from arena_distill.logs import script_logging
from arena_distill.report.evaluation import holdout_name, holdout_rows, labelled_test_rows
from arena_distill.report.score_holdout import adapter_model, holdout_scores, scored_rows
from arena_distill.scoring.calibration import PairScaling
from arena_distill.serving.prediction import load_scorers, saved_calibration, scorers_views

with script_logging(snakemake.log[0]) as log:
    torch.set_num_threads(snakemake.threads)
    text, settings = snakemake.params.text, snakemake.params.predict
    row_sets = {"holdout": holdout_rows(snakemake.input.train, snakemake.input.folds)}
    if "test_labels" in snakemake.input.keys():
        row_sets["test"] = labelled_test_rows(snakemake.input.test, snakemake.input.test_labels)
    name = holdout_name(snakemake.wildcards.scored)
    calibration = saved_calibration(snakemake.input.model) if "model" in snakemake.input.keys() else None
    # The submission's scoring also reports the calibrations the run fitted for comparison only.
    compared = {}
    if "calibration" in snakemake.input.keys():
        compared = {
            method: PairScaling.from_dict(fit) for method, fit in read_json(snakemake.input.calibration).get("compared", {}).items()
        }
    report, tables = {}, []
    if len(row_sets["holdout"]):
        if "model" in snakemake.input.keys():
            scorers = load_scorers(snakemake.input.model, settings)
        else:
            scorers = [adapter_model(snakemake.params.student_base, list(snakemake.input.adapters), snakemake.params.average_method)]
        for row_set, rows in row_sets.items():
            views = scorers_views(scorers, rows, text, settings)
            if row_set == "holdout":
                report = holdout_scores(name, views, rows, calibration)
            tables.append(scored_rows(row_set, rows, views, calibration, compared))
    probs = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["rows", "id", "label"])
    with atomic_path(snakemake.output.probs) as tmp:
        probs.to_parquet(tmp, index=False)
    write_json(report, snakemake.output.metrics)
    log.info("%s on %d holdout rows: %s", name, len(row_sets["holdout"]), report)
