if DRIVER_RUNS_RULES:

    localrules:
        submission,


rule calibrate_submission:
    input:
        unpack(get_calibration_inputs),
    output:
        paths.CALIBRATION_FIT,
    log:
        paths.log("calibrate_submission"),
    benchmark:
        paths.benchmark("calibrate_submission")
    priority: PRIORITY["calibrate_submission"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        predict=plan.predict_settings(),
        text=config["text"],
    script:
        "../scripts/calibrate_submission.py"


rule predict:
    input:
        model=rules.package_model.output[0],
        test=paths.table("test"),
    output:
        paths.PREDICTIONS,
    log:
        paths.log("predict"),
    benchmark:
        paths.benchmark("predict")
    conda:
        "../envs/arena-distill.yaml"
    params:
        predict=plan.predict_settings(),
        text=config["text"],
    script:
        "../scripts/predict.py"


rule submission:
    input:
        unpack(get_submission_inputs),
        predictions=rules.predict.output[0],
        test=paths.table("test"),
    output:
        paths.SUBMISSION,
    log:
        paths.log("submission"),
    conda:
        "../envs/arena-distill.yaml"
    params:
        shrink=config["predict"]["shrink"],
        no_ties=config["predict"]["no_ties"],
    script:
        "../scripts/submission.py"
