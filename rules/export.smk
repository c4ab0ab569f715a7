if DRIVER_RUNS_RULES:

    localrules:
        package_model,


rule quantize_student:
    input:
        model=rules.merge_student.output[0],
        train=paths.table("train"),
        folds=rules.clean_folds.output[0],
    output:
        directory(paths.QUANTIZED),
    log:
        paths.log("quantize_student"),
    benchmark:
        paths.benchmark("quantize_student")
    priority: PRIORITY["quantize_student"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        quantize=config["quantize"],
        text=config["text"],
        recipe=plan.model_card_recipe(),
    script:
        "../scripts/quantize_student.py"


rule package_model:
    input:
        unpack(get_package_inputs),
    output:
        directory(paths.MODEL),
    log:
        paths.log("package_model"),
    priority: PRIORITY["package_model"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        predict=plan.predict_settings(),
    script:
        "../scripts/package_model.py"
