if DRIVER_RUNS_RULES:

    localrules:
        evaluate,
        figures,


rule score_holdout:
    input:
        unpack(get_score_holdout_inputs),
        train=paths.table("train"),
        folds=rules.clean_folds.output[0],
    output:
        metrics=paths.holdout_scores("{scored}"),
        probs=paths.holdout_scores("{scored}", ".parquet"),
    log:
        paths.log("score_holdout", "{scored}"),
    benchmark:
        paths.benchmark("score_holdout", "{scored}")
    wildcard_constraints:
        scored=HOLDOUT_SCORED,
    conda:
        "../envs/arena-distill.yaml"
    params:
        student_base=lambda wildcards, input: inputs.as_seen(
            "student_base", {"path": plan.source_path("student")}, input
        )["path"],
        # The fresh-init comparison averages its folds (best_fold and ensemble are the main run's).
        average_method=(
            "mean"
            if config["average"]["method"] in ("best_fold", "ensemble")
            else config["average"]["method"]
        ),
        predict=plan.predict_settings(),
        text=config["text"],
    script:
        "../scripts/score_holdout.py"


rule evaluate:
    input:
        unpack(get_evaluate_inputs),
    output:
        metrics=paths.METRICS,
        summary=paths.SUMMARY,
    log:
        paths.log("evaluate"),
    conda:
        "../envs/arena-distill.yaml"
    params:
        teacher_val_logits=lambda wildcards, input: inputs.teacher_val_logits_seen(
            plan, input
        ),
    script:
        "../scripts/evaluate.py"


rule figures:
    input:
        unpack(get_figures_inputs),
    output:
        data_labels=report(
            paths.figure("data_labels"),
            caption="../report/data_labels.rst",
            category="Data",
        ),
        teacher_curves=report(
            paths.figure("teacher_curves"),
            caption="../report/learning_curves.rst",
            category="Teachers",
        ),
        student_curves=report(
            paths.figure("student_curves"),
            caption="../report/learning_curves.rst",
            category="Student",
        ),
        reliability=report(
            paths.figure("reliability"),
            caption="../report/reliability.rst",
            category="Student",
        ),
        confusion=report(
            paths.figure("confusion"),
            caption="../report/confusion.rst",
            category="Student",
        ),
        position_bias=report(
            paths.figure("position_bias"),
            caption="../report/position_bias.rst",
            category="Student",
        ),
        cv=report(
            paths.figure("cv"),
            caption="../report/cv.rst",
            category="Final model",
        ),
        class_shares=report(
            paths.figure("class_shares"),
            caption="../report/class_shares.rst",
            category="Final model",
        ),
        job_resources=report(
            paths.figure("job_resources"),
            caption="../report/job_resources.rst",
            category="Run",
        ),
    log:
        paths.log("figures"),
    conda:
        "../envs/arena-distill.yaml"
    params:
        runs=lambda wildcards, input: inputs.training_runs_seen(
            plan, input.training_metrics
        ),
    script:
        "../scripts/figures.py"
