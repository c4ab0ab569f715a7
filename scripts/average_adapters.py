"""Rule average_adapters: the student's fold adapters -> one adapter."""

from arena_distill.adapters import average_adapters
from arena_distill.logs import script_logging

with script_logging(snakemake.log[0]) as log:
    summary = average_adapters(list(snakemake.input), snakemake.output[0], method=snakemake.params.method)
    log.info("averaged %d adapters (%s): %d tensors, rank %d", len(snakemake.input), summary["method"], summary["tensors"], summary["r"])
