"""Rule post_pretrain: causal-LM LoRA of one model on the UT corpus, merged into its base."""

from arena_distill.launch import process_count, run_stage
from arena_distill.logs import script_logging

with script_logging(snakemake.log[0]):
    run_stage(
        "post_pretrain",
        dict(
            base=snakemake.params.source,
            corpus=snakemake.input.corpus,
            spec=snakemake.params.spec,
            settings=snakemake.params.settings,
            training=snakemake.params.training,
            out_model=snakemake.output.model,
            out_adapter=snakemake.output.adapter,
            out_metrics=snakemake.output.metrics,
            checkpoint_dir=snakemake.params.checkpoints,
        ),
        processes=process_count(snakemake.resources),
        threads=snakemake.threads,
        log_path=snakemake.log[0],
    )
