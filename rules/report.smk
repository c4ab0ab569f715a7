if DRIVER_RUNS_RULES:

    localrules:
        evaluate,
        figures,


rule score_holdout:
    input:
        unpack(get_score_holdout_inputs),
        train="results/data/train.parquet",
        folds="results/folds/folds_clean.json",
    output:
        metrics="results/eval/holdout/{scored}.json",
        probs="results/eval/holdout/{scored}.parquet",
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
        # The fresh-init comparison averages its folds (best_fold and ensemble are the main run's).
        average_method=(
            "mean"
            if config["average"]["method"] in ("best_fold", "ensemble")
            else config["average"]["method"]
        ),
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


rule figures:
    input:
        unpack(get_figures_inputs),
    output:
        data_labels=report(
            FIGURES["data_labels"],
            caption="../report/data_labels.rst",
            category="Data",
        ),
        teacher_curves=report(
            FIGURES["teacher_curves"],
            caption="../report/learning_curves.rst",
            category="Teachers",
        ),
        student_curves=report(
            FIGURES["student_curves"],
            caption="../report/learning_curves.rst",
            category="Student",
        ),
        reliability=report(
            FIGURES["reliability"],
            caption="../report/reliability.rst",
            category="Student",
        ),
        confusion=report(
            FIGURES["confusion"],
            caption="../report/confusion.rst",
            category="Student",
        ),
        position_bias=report(
            FIGURES["position_bias"],
            caption="../report/position_bias.rst",
            category="Student",
        ),
        cv=report(
            FIGURES["cv"],
            caption="../report/cv.rst",
            category="Final model",
        ),
        class_shares=report(
            FIGURES["class_shares"],
            caption="../report/class_shares.rst",
            category="Final model",
        ),
        job_resources=report(
            FIGURES["job_resources"],
            caption="../report/job_resources.rst",
            category="Run",
        ),
    log:
        "results/logs/figures.log",
    conda:
        "../envs/arena-distill.yaml"
    params:
        runs=training_runs(),
        # Read at run time: every benchmarked job of the DAG has finished before the
        # evaluation this rule waits for.
        benchmarks="results/benchmarks",
    script:
        "../scripts/figures.py"
