if DRIVER_RUNS_RULES:

    localrules:
        kaggle_bundle,


rule kaggle_bundle:
    input:
        unpack(get_kaggle_inputs),
        model="results/model",
        train="results/data/train.parquet",
        pyproject="pyproject.toml",
        readme="README.md",
    output:
        directory("results/kaggle"),
    log:
        "results/logs/kaggle_bundle.log",
    conda:
        "../envs/arena-distill.yaml"
    params:
        wheels=kaggle_wheels(),
        student=config["student"],
        tokenizer=config["tokenizer"],
        text=config["text"],
        predict=predict_params(),
    script:
        "../scripts/kaggle_bundle.py"
