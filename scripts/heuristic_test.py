"""Rule heuristic_test: one fold's fitted heuristic features model on the labelled test rows."""

from arena_distill.baselines.heuristic_model import score_test
from arena_distill.logs import script_logging
from arena_distill.report.evaluation import labelled_test_rows

with script_logging(snakemake.log[0]) as log:
    rows = labelled_test_rows(snakemake.input.test, snakemake.input.test_labels)
    score_test(snakemake.input.model, rows, snakemake.output[0])
    log.info("fold %s: scored %d labelled test rows", snakemake.wildcards.fold, len(rows))
