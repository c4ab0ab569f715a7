if DRIVER_RUNS_RULES:

    localrules:
        submission,


rule calibrate_submission:
    input:
        unpack(get_calibration_inputs),
    output:
        "results/calibration/calibration.json",
    log:
        "results/logs/calibrate_submission.log",
    benchmark:
        "results/benchmarks/calibrate_submission.tsv"
    priority: PRIORITY["calibrate_submission"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        predict=predict_params(),
        text=config["text"],
    script:
        "../scripts/calibrate_submission.py"


rule predict:
    input:
        model="results/model",
        test="results/data/test.parquet",
    output:
        "results/predictions/test.parquet",
    log:
        "results/logs/predict.log",
    benchmark:
        "results/benchmarks/predict.tsv"
    conda:
        "../envs/arena-distill.yaml"
    params:
        predict=predict_params(),
        text=config["text"],
    script:
        "../scripts/predict.py"


rule submission:
    input:
        unpack(get_submission_inputs),
        predictions="results/predictions/test.parquet",
        test="results/data/test.parquet",
    output:
        "results/submission.csv",
    log:
        "results/logs/submission.log",
    conda:
        "../envs/arena-distill.yaml"
    params:
        shrink=config["predict"]["shrink"],
        no_ties=config["predict"]["no_ties"],
    script:
        "../scripts/submission.py"
