"""Rule heuristic_model: the heuristic features model of one fold -> its teacher logits, its
out-of-fold logits, its holdout probabilities, the fitted model and its metrics."""

from arena_distill.baselines.heuristic_model import heuristic_model
from arena_distill.io import write_json
from arena_distill.logs import script_logging

with script_logging(snakemake.log[0]) as log:
    metrics = heuristic_model(
        train_table=snakemake.input.train,
        folds=snakemake.input.folds,
        fold=int(snakemake.wildcards.fold),
        teacher_rows=snakemake.params.teacher_rows,
        outputs=snakemake.output,
    )
    write_json(metrics, snakemake.output.metrics)
    log.info("fold %s: out-of-fold %s", snakemake.wildcards.fold, metrics)
