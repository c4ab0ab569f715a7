"""Rule quantize_student: the merged student -> results/student/quantized (GPTQ 8-bit by default),
which package_model joins with the fitted calibration as results/model."""

import pandas as pd
import torch

from arena_distill.export.ensemble import map_members, members
from arena_distill.export.quantize import quantize_model
from arena_distill.io import read_json
from arena_distill.logs import script_logging
from arena_distill.student.distillation import calibration_texts

with script_logging(snakemake.log[0]) as log:
    torch.set_num_threads(snakemake.threads)
    settings = snakemake.params.quantize
    texts = []
    if settings["method"] == "gptq":
        texts = calibration_texts(
            pd.read_parquet(snakemake.input.train),
            read_json(snakemake.input.folds),
            members(snakemake.input.model)[0],
            snakemake.params.text,
            n=settings["n_calibration"],
            seed=settings["seed"],
            fold=settings.get("calibration_fold"),
        )

    def quantize(model, out):
        summary = quantize_model(
            model,
            out,
            method=settings["method"],
            bits=settings["bits"],
            group_size=settings["group_size"],
            calibration_texts=texts,
            model_seqlen=settings.get("model_seqlen"),
            dtype=settings["dtype"],
            inference={"text": snakemake.params.text},
            recipe=snakemake.params.recipe,
        )
        log.info("quantized %s: %s", model, summary)

    map_members(snakemake.input.model, snakemake.output[0], quantize)
