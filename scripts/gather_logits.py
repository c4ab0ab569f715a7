"""Rule gather_logits: a fold's logit shards -> one table, every row exactly once."""

from arena_distill.data.pairs import fold_ids, logit_ids
from arena_distill.io import read_json, read_parquet, write_parquet
from arena_distill.logs import script_logging
from arena_distill.scoring.logits import gather_shards

with script_logging(snakemake.log[0]) as log:
    ids = logit_ids(
        fold_ids(read_json(snakemake.input.folds), int(snakemake.wildcards.fold), snakemake.params.rows), snakemake.params.max_rows
    )
    table = gather_shards({path: read_parquet(path) for path in snakemake.input.shards}, ids)
    log.info("gathered %d rows from %d shards", len(table), len(snakemake.input.shards))
    write_parquet(table, snakemake.output[0])
