"""Rule calibrate_teacher: vector scaling of one teacher, fitted on its out-of-fold logits."""

import pandas as pd

from arena_distill.io import read_parquet, write_json
from arena_distill.logs import script_logging
from arena_distill.scoring.calibration import calibration_report, fit_vector_scaling
from arena_distill.scoring.logits import LOGIT_COLUMNS

with script_logging(snakemake.log[0]) as log:
    held_out = pd.concat([read_parquet(path) for path in snakemake.input], ignore_index=True)
    logits, labels = held_out[LOGIT_COLUMNS].to_numpy(), held_out["label"].to_numpy()
    report = calibration_report(logits, labels, fit_vector_scaling(logits, labels))
    log.info("vector scaling on %d out-of-fold rows: NLL %.4f -> %.4f", report["rows"], report["nll_before"], report["nll_after"])
    write_json(report, snakemake.output[0])
