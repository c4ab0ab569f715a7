"""Rule evaluate: every model of the run against the class prior -> metrics.json + summary.md."""

import torch

from arena_distill.evaluation import evaluate_run, summary_markdown
from arena_distill.io import atomic_path, write_json
from arena_distill.logs import script_logging

with script_logging(snakemake.log[0]) as log:
    torch.set_num_threads(snakemake.threads)
    teachers, n_folds = snakemake.params.teachers, snakemake.params.n_folds
    tables = list(snakemake.input.teacher_val_logits)
    report = evaluate_run(
        teacher_val_logits={t: tables[i * n_folds : (i + 1) * n_folds] for i, t in enumerate(teachers)},
        student_val_logits=list(snakemake.input.student_val_logits),
        models={"merged": snakemake.input.merged, "submission (quantized)": snakemake.input.model},
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
