"""Rule submission: test predictions -> results/submission.csv, checked against the test ids,
after the optional post-processing (`predict.shrink`, then `predict.no_ties`)."""

import pandas as pd

from arena_distill import LABELS
from arena_distill.io import read_parquet
from arena_distill.logs import script_logging
from arena_distill.scoring.postprocess import apply_shrink, fit_shrink_out_of_fold, no_ties
from arena_distill.serving.submission import SUBMISSION_COLUMNS, check_submission, write_table

with script_logging(snakemake.log[0]) as log:
    predictions = pd.read_parquet(snakemake.input.predictions)[SUBMISSION_COLUMNS]
    test_ids = pd.read_parquet(snakemake.input.test, columns=["id"])["id"].tolist()
    check_submission(predictions, test_ids, snakemake.input.predictions)
    probs = predictions[list(LABELS)].to_numpy()
    if snakemake.params.shrink:
        shrink = fit_shrink_out_of_fold([read_parquet(path) for path in snakemake.input.student_val_logits])
        probs = apply_shrink(probs, shrink)
        log.info("shrink fitted on %s out-of-fold rows per bin: factors %s", shrink.rows, shrink.factors)
    if snakemake.params.no_ties:
        probs = no_ties(probs)
        log.info("no ties: P(tie) capped at max(P(A), P(B))")
    predictions[list(LABELS)] = probs
    write_table(predictions, snakemake.output[0])
    log.info("wrote %d rows to %s", len(predictions), snakemake.output[0])
