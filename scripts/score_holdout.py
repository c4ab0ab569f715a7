"""Rule score_holdout: one model on the holdout prompts -> results/eval/holdout/{scored}.json.

A student fold adapter (or a fold average) is merged into its base; the merged and the
exported model are loaded from disk; the exported one is also reported as submitted.
"""

import torch

from arena_distill.evaluation import adapter_views, holdout_name, holdout_rows, holdout_scores, holdout_views
from arena_distill.io import write_json
from arena_distill.logs import script_logging
from arena_distill.prediction import read_calibration

with script_logging(snakemake.log[0]) as log:
    torch.set_num_threads(snakemake.threads)
    text, settings = snakemake.params.text, snakemake.params.predict
    rows = holdout_rows(snakemake.input.train, snakemake.input.folds)
    name = holdout_name(snakemake.wildcards.scored)
    report = {}
    if len(rows):
        if "model" in snakemake.input.keys():
            views = holdout_views(snakemake.input.model, rows, text, settings)
        else:
            views = adapter_views(snakemake.params.student_base, list(snakemake.input.adapters),
                                  snakemake.params.average_method, rows, text, settings)
        report = holdout_scores(name, views, rows["label"].to_numpy(), read_calibration(snakemake.input.get("calibration")))
    write_json(report, snakemake.output[0])
    log.info("%s on %d holdout rows: %s", name, len(rows), report)
