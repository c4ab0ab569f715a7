"""Rule average_adapters: the student's fold adapters -> one adapter (their average, or the
best fold by out-of-fold log loss with `average.method: best_fold`), or with `ensemble` all
of them, kept apart as a fold ensemble."""

from arena_distill.export.ensemble import copy_members
from arena_distill.io import read_parquet
from arena_distill.logs import script_logging
from arena_distill.scoring.metrics import validation_metrics
from arena_distill.student.adapters import average_adapters, best_fold_adapter

with script_logging(snakemake.log[0]) as log:
    adapters, method = list(snakemake.input.adapters), snakemake.params.method
    if method == "best_fold":
        losses = [validation_metrics(read_parquet(path))["val_log_loss_tta"] for path in snakemake.input.val_logits]
        summary = best_fold_adapter(adapters, losses, snakemake.output[0])
        log.info("best fold %d of %d by out-of-fold TTA log loss %s", summary["fold"], len(adapters), losses)
    elif method == "ensemble":
        summary = copy_members(adapters, snakemake.output[0])
        log.info("fold ensemble of %d adapters, not averaged", len(adapters))
    else:
        summary = average_adapters(adapters, snakemake.output[0], method=method)
        log.info("averaged %d adapters (%s): %d tensors, rank %d", len(adapters), summary["method"], summary["tensors"], summary["r"])
