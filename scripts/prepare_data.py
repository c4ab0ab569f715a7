"""Rule prepare_data: one raw input table -> results/data/{table}.parquet."""

from arena_distill.data.tables import prepare_test, prepare_train
from arena_distill.io import write_parquet
from arena_distill.logs import script_logging

with script_logging(snakemake.log[0]) as log:
    table = snakemake.wildcards.table
    params = snakemake.params.data
    if table == "train":
        base, *extra = snakemake.input
        frame = prepare_train(base, dict(zip(params["extra"], extra)), bad_json=params["bad_json"])
    elif table == "test":
        frame = prepare_test(snakemake.input[0], bad_json=params["bad_json"])
    else:  # post_pretrain, calibration: labelled pairs in the train schema
        frame = prepare_train(snakemake.input[0], bad_json=params["bad_json"]).assign(source=table)
    write_parquet(frame, snakemake.output[0])
    log.info("wrote %d rows to %s", len(frame), snakemake.output[0])
