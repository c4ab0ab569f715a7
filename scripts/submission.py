"""Rule submission: test predictions -> results/submission.csv, checked against the test ids."""

import pandas as pd

from arena_distill.logs import script_logging
from arena_distill.prediction import SUBMISSION_COLUMNS, check_submission, write_table

with script_logging(snakemake.log[0]) as log:
    predictions = pd.read_parquet(snakemake.input.predictions)[SUBMISSION_COLUMNS]
    test_ids = pd.read_parquet(snakemake.input.test, columns=["id"])["id"].tolist()
    check_submission(predictions, test_ids, snakemake.input.predictions)
    write_table(predictions, snakemake.output[0])
    log.info("wrote %d rows to %s", len(predictions), snakemake.output[0])
