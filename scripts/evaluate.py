"""Rule evaluate: every model of the run against the class prior -> metrics.json + summary.md."""

import torch

from arena_distill.evaluation import evaluate_run, summary_markdown
from arena_distill.io import atomic_path, write_json
from arena_distill.logs import script_logging

with script_logging(snakemake.log[0]) as log:
    torch.set_num_threads(snakemake.threads)
    report = evaluate_run(
        teacher_val_logits=snakemake.params.teacher_val_logits,
        student_val_logits=list(snakemake.input.student_val_logits),
        student_adapters=list(snakemake.input.student_adapters),
        fresh_init_val_logits=list(snakemake.input.fresh_init_val_logits),
        fresh_init_adapters=list(snakemake.input.fresh_init_adapters),
        student_base=snakemake.params.student_base,
        average_method=snakemake.params.average_method,
        models={"merged model (fold average)": snakemake.input.merged, "submission (quantized)": snakemake.input.model},
        train_table=snakemake.input.train,
        folds=snakemake.input.folds,
        submission=snakemake.input.submission,
        test_labels=snakemake.input.get("test_labels"),
        text=snakemake.params.text,
        settings=snakemake.params.predict,
    )
    summary = summary_markdown(report)
    log.info("\n%s", summary)
    write_json(report, snakemake.output.metrics)
    with atomic_path(snakemake.output.summary) as tmp:
        tmp.write_text(summary)
