rule evaluate:
    input:
        unpack(get_evaluate_inputs),
        merged="results/student/merged",
        model="results/model",
        train="results/data/train.parquet",
        folds="results/folds/folds_clean.json",
    output:
        metrics="results/eval/metrics.json",
        summary="results/eval/summary.md",
    log:
        "results/logs/evaluate.log",
    benchmark:
        "results/benchmarks/evaluate.tsv"
    conda:
        "../envs/arena-distill.yaml"
    params:
        teacher_val_logits={
            teacher: teacher_val_logits(teacher) for teacher in teachers()
        },
        student_base=source_path("student"),
        average_method=config["average"]["method"],
        predict=predict_params(),
        text=config["text"],
    script:
        "../scripts/evaluate.py"
