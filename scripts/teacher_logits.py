"""Rule teacher_logits: one fold's teacher scores one shard of the rows it labels."""

import torch

from arena_distill.logs import script_logging
from arena_distill.training.stages import teacher_logits

with script_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    settings = snakemake.params.logits
    teacher_logits(
        base=snakemake.params.base,
        adapter=snakemake.input.adapter,
        train_table=snakemake.input.train,
        folds=snakemake.input.folds,
        fold=int(snakemake.wildcards.fold),
        shard=int(snakemake.wildcards.shard),
        n_shards=settings["n_shards"],
        rows=settings["rows"],
        spec=snakemake.params.spec,
        text=snakemake.params.text,
        max_tokens=settings["max_tokens"],
        max_rows=settings.get("max_rows"),
        precision=snakemake.params.precision,
        out=snakemake.output[0],
    )
