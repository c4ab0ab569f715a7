rule distill_student:
    input:
        unpack(get_distill_inputs),
        train=paths.table("train"),
        folds=rules.clean_folds.output[0],
    output:
        adapter=directory(f"{paths.STUDENT_FOLD}/adapter"),
        metrics=f"{paths.STUDENT_FOLD}/metrics.json",
        val_logits=f"{paths.STUDENT_FOLD}/val_logits.parquet",
    log:
        paths.log("distill_student", "{student_run}", "fold{fold}"),
    benchmark:
        paths.benchmark("distill_student", "{student_run}", "fold{fold}")
    priority: PRIORITY["distill_student"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        base=lambda wildcards, input: inputs.as_seen(
            "base", plan.student_base(wildcards.student_run), input
        ),
        teacher_logits=lambda wildcards, input: inputs.teacher_logits_seen(
            plan, wildcards.fold, input
        ),
        calibrations=lambda wildcards, input: inputs.calibrations_seen(plan, input),
        spec=config["student"],
        training=config["training"],
        distill=plan.distill_settings(),
        text=config["text"],
        checkpoints=lambda wildcards: paths.checkpoint_dir(
            "distill_student", wildcards.student_run, f"fold{wildcards.fold}"
        ),
        curves=lambda wildcards: paths.curves_dir(
            "distill_student", wildcards.student_run, f"fold{wildcards.fold}"
        ),
    script:
        "../scripts/distill_student.py"


rule average_adapters:
    input:
        adapters=plan.student_adapters(),
        val_logits=plan.student_val_logits(),
    output:
        directory(paths.AVERAGED),
    log:
        paths.log("average_adapters"),
    priority: PRIORITY["average_adapters"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        method=config["average"]["method"],
    script:
        "../scripts/average_adapters.py"


rule merge_student:
    input:
        unpack(get_merge_base_inputs),
        adapter=rules.average_adapters.output[0],
    output:
        directory(paths.MERGED),
    log:
        paths.log("merge_student"),
    benchmark:
        paths.benchmark("merge_student")
    priority: PRIORITY["merge_student"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        base=lambda wildcards, input: inputs.as_seen(
            "base", plan.base_of("student"), input
        ),
        spec=plan.model_slice("student", "seed"),
        dtype=config["merge"]["dtype"],
    script:
        "../scripts/merge_student.py"
