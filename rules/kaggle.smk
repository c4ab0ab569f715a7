if DRIVER_RUNS_RULES:

    localrules:
        kaggle_bundle,


rule kaggle_bundle:
    input:
        unpack(get_kaggle_inputs),
        model=rules.package_model.output[0],
        train=paths.table("train"),
        pyproject="pyproject.toml",
        readme="README.md",
    output:
        directory(paths.KAGGLE),
    log:
        paths.log("kaggle_bundle"),
    conda:
        "../envs/arena-distill.yaml"
    params:
        wheels=plan.kaggle_wheels(),
        student=config["student"],
        tokenizer=config["tokenizer"],
        text=config["text"],
        predict=plan.predict_settings(),
    script:
        "../scripts/kaggle_bundle.py"
