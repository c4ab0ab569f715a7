"""Rule post_pretrain: one model's classifier LoRA pre-finetuned on labelled pairs."""

from arena_distill.launch import process_count, run_stage
from arena_distill.logs import script_logging

with script_logging(snakemake.log[0]):
    run_stage(
        "post_pretrain",
        dict(
            base=snakemake.params.source,
            pairs=snakemake.input.pairs,
            spec=snakemake.params.spec,
            settings=snakemake.params.settings,
            training=snakemake.params.training,
            text=snakemake.params.text,
            outputs=dict(
                adapter=snakemake.output.adapter,
                metrics=snakemake.output.metrics,
                val_logits=snakemake.output.dev_logits,
                checkpoint_dir=snakemake.params.checkpoints,
                curves_dir=snakemake.params.curves,
            ),
        ),
        processes=process_count(snakemake.resources),
        threads=snakemake.threads,
        log_path=snakemake.log[0],
    )
