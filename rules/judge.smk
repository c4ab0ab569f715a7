rule prompt_judge:
    input:
        unpack(get_judge_inputs),
        train=paths.table("train"),
        folds=rules.clean_folds.output[0],
        test=paths.table("test"),
    output:
        predictions=paths.JUDGE_PREDICTIONS,
        scored=paths.JUDGE_SCORED,
    log:
        paths.log("prompt_judge"),
    benchmark:
        paths.benchmark("prompt_judge")
    priority: PRIORITY["prompt_judge"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        model=lambda wildcards, input: input.get("model", plan.judge_model()),
        judge={
            k: v for k, v in config["judge"].items() if k not in ("enabled", "model")
        },
    script:
        "../scripts/prompt_judge.py"
