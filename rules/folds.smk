if DRIVER_RUNS_RULES:

    localrules:
        make_folds,
        clean_folds,


rule make_folds:
    input:
        paths.table("train"),
    output:
        paths.FOLDS,
    log:
        paths.log("make_folds"),
    priority: PRIORITY["make_folds"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        folds=config["folds"],
    script:
        "../scripts/make_folds.py"


rule clean_folds:
    input:
        train=paths.table("train"),
        folds=rules.make_folds.output[0],
    output:
        paths.CLEAN_FOLDS,
    log:
        paths.log("clean_folds"),
    priority: PRIORITY["clean_folds"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        clean=config.get("clean", {}),
    script:
        "../scripts/clean_folds.py"
