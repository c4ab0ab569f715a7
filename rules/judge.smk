rule prompt_judge:
    input:
        unpack(get_judge_inputs),
        train="results/data/train.parquet",
        folds="results/folds/folds_clean.json",
        test="results/data/test.parquet",
    output:
        predictions="results/judge/predictions.parquet",
        scored="results/judge/scored.parquet",
    log:
        "results/logs/prompt_judge.log",
    benchmark:
        "results/benchmarks/prompt_judge.tsv"
    priority: PRIORITY["prompt_judge"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        model=judge_model(),
        judge={
            k: v for k, v in config["judge"].items() if k not in ("enabled", "model")
        },
    script:
        "../scripts/prompt_judge.py"
