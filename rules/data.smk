rule prepare_data:
    input:
        get_table_sources,
    output:
        paths.TABLE,
    log:
        paths.log("prepare_data", "{table}"),
    priority: PRIORITY["prepare_data"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        data=get_prepare_settings,
    script:
        "../scripts/prepare_data.py"
