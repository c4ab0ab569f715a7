"""Rule predict: the served model scores the test pairs, with A/B-swap TTA and its packaged calibration."""

import pandas as pd
import torch

from arena_distill.io import write_parquet
from arena_distill.logs import script_logging
from arena_distill.serving.prediction import predict_table, saved_calibration

with script_logging(snakemake.log[0]) as log:
    torch.set_num_threads(snakemake.threads)
    predictions = predict_table(
        snakemake.input.model,
        pd.read_parquet(snakemake.input.test),
        snakemake.params.text,
        snakemake.params.predict,
        calibration=saved_calibration(snakemake.input.model),
    )
    write_parquet(predictions, snakemake.output[0])
    log.info("predicted %d test rows", len(predictions))
