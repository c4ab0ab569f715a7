if DRIVER_RUNS_RULES:

    localrules:
        gather_logits,
        calibrate_teacher,


rule train_teacher:
    input:
        unpack(get_base_inputs),
        train=paths.table("train"),
        folds=rules.clean_folds.output[0],
    output:
        adapter=directory(f"{paths.TEACHER_FOLD}/adapter"),
        metrics=f"{paths.TEACHER_FOLD}/metrics.json",
        val_logits=f"{paths.TEACHER_FOLD}/val_logits.parquet",
    log:
        paths.log("train_teacher", "{teacher}", "fold{fold}"),
    benchmark:
        paths.benchmark("train_teacher", "{teacher}", "fold{fold}")
    priority: PRIORITY["train_teacher"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        base=lambda wildcards, input: inputs.as_seen(
            "base", plan.base_of(wildcards.teacher), input
        ),
        spec=lambda wildcards: config["teachers"][wildcards.teacher],
        training=config["training"],
        text=config["text"],
        checkpoints=lambda wildcards: paths.checkpoint_dir(
            "train_teacher", wildcards.teacher, f"fold{wildcards.fold}"
        ),
        curves=lambda wildcards: paths.curves_dir(
            "train_teacher", wildcards.teacher, f"fold{wildcards.fold}"
        ),
    script:
        "../scripts/train_teacher.py"


rule teacher_logits:
    input:
        unpack(get_base_inputs),
        adapter=rules.train_teacher.output.adapter,
        train=paths.table("train"),
        folds=rules.clean_folds.output[0],
    output:
        paths.logit_shard("{teacher}", "{fold}", "{shard}"),
    log:
        paths.log("teacher_logits", "{teacher}", "fold{fold}", "shard{shard}"),
    benchmark:
        paths.benchmark("teacher_logits", "{teacher}", "fold{fold}", "shard{shard}")
    priority: PRIORITY["teacher_logits"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        base=lambda wildcards, input: inputs.as_seen(
            "base", plan.base_of(wildcards.teacher), input
        ),
        spec=lambda wildcards: config["teachers"][wildcards.teacher],
        text=config["text"],
        logits=config["teacher_logits"],
        precision=config["training"]["precision"],
    script:
        "../scripts/teacher_logits.py"


rule gather_logits:
    input:
        shards=get_logit_shards,
        folds=rules.clean_folds.output[0],
    output:
        f"{paths.TEACHER_FOLD}/logits.parquet",
    log:
        paths.log("gather_logits", "{teacher}", "fold{fold}"),
    priority: PRIORITY["gather_logits"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        rows=config["teacher_logits"]["rows"],
        max_rows=config["teacher_logits"].get("max_rows"),
    script:
        "../scripts/gather_logits.py"


rule calibrate_teacher:
    input:
        get_teacher_val_logits,
    output:
        paths.TEACHER_CALIBRATION,
    log:
        paths.log("calibrate_teacher", "{teacher}"),
    priority: PRIORITY["calibrate_teacher"]
    conda:
        "../envs/arena-distill.yaml"
    script:
        "../scripts/calibrate_teacher.py"
