"""Rule calibrate_submission: the submission's post-hoc calibration, fitted on rows no model trained on."""

import pandas as pd
import torch

from arena_distill.io import write_json
from arena_distill.logs import script_logging
from arena_distill.serving.prediction import calibrate_submission

with script_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    settings = snakemake.params.predict
    if "rows" in snakemake.input.keys():
        report = calibrate_submission(
            settings["calibration"],
            model_dir=snakemake.input.model,
            rows=pd.read_parquet(snakemake.input.rows),
            text=snakemake.params.text,
            settings=settings,
        )
    else:
        report = calibrate_submission(settings["calibration"], oof_logits=list(snakemake.input.oof))
    write_json(report, snakemake.output[0])
