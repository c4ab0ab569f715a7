"""Rule score_holdout: each student fold, their average and the final models on the holdout prompts."""

import torch

from arena_distill.evaluation import holdout_report
from arena_distill.io import write_json
from arena_distill.logs import script_logging
from arena_distill.prediction import read_calibration

with script_logging(snakemake.log[0]) as log:
    torch.set_num_threads(snakemake.threads)
    report = holdout_report(
        student_base=snakemake.params.student_base,
        student_adapters=list(snakemake.input.student_adapters),
        fresh_init_adapters=list(snakemake.input.fresh_init_adapters),
        average_method=snakemake.params.average_method,
        models={"merged model (fold average)": snakemake.input.merged, "submission (quantized)": snakemake.input.model},
        train_table=snakemake.input.train,
        folds=snakemake.input.folds,
        text=snakemake.params.text,
        settings=snakemake.params.predict,
        calibration=read_calibration(snakemake.input.get("calibration")),
    )
    write_json(report, snakemake.output[0])
    log.info("scored %d models on the holdout prompts", len(report))
