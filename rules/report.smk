localrules:
    evaluate,


rule score_holdout:
    input:
        unpack(get_score_holdout_inputs),
        train="results/data/train.parquet",
        folds="results/folds/folds_clean.json",
    output:
        "results/eval/holdout/{scored}.json",
    log:
        "results/logs/score_holdout/{scored}.log",
    benchmark:
        "results/benchmarks/score_holdout/{scored}.tsv"
    wildcard_constraints:
        scored=HOLDOUT_SCORED,
    conda:
        "../envs/arena-distill.yaml"
    params:
        student_base=source_path("student"),
        average_method=config["average"]["method"],
        predict=predict_params(),
        text=config["text"],
    script:
        "../scripts/score_holdout.py"


rule evaluate:
    input:
        unpack(get_evaluate_inputs),
    output:
        metrics="results/eval/metrics.json",
        summary="results/eval/summary.md",
    log:
        "results/logs/evaluate.log",
    conda:
        "../envs/arena-distill.yaml"
    params:
        teacher_val_logits={
            teacher: teacher_val_logits(teacher) for teacher in teachers()
        },
    script:
        "../scripts/evaluate.py"
