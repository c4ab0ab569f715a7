"""Rule train_teacher: one teacher's LoRA classifier on one fold (torchrun when several GPUs)."""

from arena_distill.launch import process_count, run_stage
from arena_distill.logs import script_logging

with script_logging(snakemake.log[0]):
    run_stage(
        "train_teacher",
        dict(
            base=snakemake.params.base,
            train_table=snakemake.input.train,
            folds=snakemake.input.folds,
            fold=int(snakemake.wildcards.fold),
            spec=snakemake.params.spec,
            training=snakemake.params.training,
            text=snakemake.params.text,
            outputs=dict(
                adapter=snakemake.output.adapter,
                metrics=snakemake.output.metrics,
                val_logits=snakemake.output.val_logits,
                checkpoint_dir=snakemake.params.checkpoints,
                curves_dir=snakemake.params.curves,
            ),
        ),
        processes=process_count(snakemake.resources),
        threads=snakemake.threads,
        log_path=snakemake.log[0],
    )
