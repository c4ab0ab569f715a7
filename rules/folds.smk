if DRIVER_RUNS_RULES:

    localrules:
        make_folds,
        clean_folds,


rule make_folds:
    input:
        "results/data/train.parquet",
    output:
        "results/folds/folds.json",
    log:
        "results/logs/make_folds.log",
    priority: PRIORITY["make_folds"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        folds=config["folds"],
    script:
        "../scripts/make_folds.py"


rule clean_folds:
    input:
        train="results/data/train.parquet",
        folds="results/folds/folds.json",
    output:
        "results/folds/folds_clean.json",
    log:
        "results/logs/clean_folds.log",
    priority: PRIORITY["clean_folds"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        clean=config.get("clean", {}),
    script:
        "../scripts/clean_folds.py"
