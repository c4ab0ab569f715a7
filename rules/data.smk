rule prepare_data:
    input:
        get_table_sources,
    output:
        "results/data/{table}.parquet",
    log:
        "results/logs/prepare_data/{table}.log",
    priority: PRIORITY["prepare_data"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        data=get_prepare_params,
    script:
        "../scripts/prepare_data.py"
