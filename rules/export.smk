if DRIVER_RUNS_RULES:

    localrules:
        package_model,


rule quantize_student:
    input:
        model="results/student/merged",
        train="results/data/train.parquet",
        folds="results/folds/folds_clean.json",
    output:
        directory("results/student/quantized"),
    log:
        "results/logs/quantize_student.log",
    benchmark:
        "results/benchmarks/quantize_student.tsv"
    priority: PRIORITY["quantize_student"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        quantize=config["quantize"],
        text=config["text"],
        recipe=model_card_recipe(),
    script:
        "../scripts/quantize_student.py"


rule package_model:
    input:
        unpack(get_package_inputs),
    output:
        directory("results/model"),
    log:
        "results/logs/package_model.log",
    priority: PRIORITY["package_model"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        predict=predict_params(),
    script:
        "../scripts/package_model.py"
