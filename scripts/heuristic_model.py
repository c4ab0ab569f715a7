"""Rule heuristic_model: the heuristic features model of one fold -> its teacher logits, its
out-of-fold logits, its holdout and labelled test probabilities, and its metrics."""

from arena_distill.evaluation import labelled_test_rows
from arena_distill.heuristic_model import heuristic_model
from arena_distill.io import write_json
from arena_distill.logs import script_logging

with script_logging(snakemake.log[0]) as log:
    test = labelled_test_rows(snakemake.input.test, snakemake.input.test_labels) if "test_labels" in snakemake.input.keys() else None
    metrics = heuristic_model(train_table=snakemake.input.train, folds=snakemake.input.folds,
                              fold=int(snakemake.wildcards.fold), teacher_rows=snakemake.params.teacher_rows, test_rows=test,
                              outputs=snakemake.output)
    write_json(metrics, snakemake.output.metrics)
    log.info("fold %s: out-of-fold %s", snakemake.wildcards.fold, metrics)
