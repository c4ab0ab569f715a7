if DRIVER_RUNS_RULES:

    localrules:
        gather_logits,
        calibrate_teacher,


rule train_teacher:
    input:
        base=get_base_inputs,
        train="results/data/train.parquet",
        folds="results/folds/folds_clean.json",
    output:
        adapter=directory("results/teachers/{teacher}/fold{fold}/adapter"),
        metrics="results/teachers/{teacher}/fold{fold}/metrics.json",
        val_logits="results/teachers/{teacher}/fold{fold}/val_logits.parquet",
    log:
        "results/logs/train_teacher/{teacher}/fold{fold}.log",
    benchmark:
        "results/benchmarks/train_teacher/{teacher}/fold{fold}.tsv"
    priority: PRIORITY["train_teacher"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        base=lambda wildcards: base_of(wildcards.teacher),
        spec=lambda wildcards: config["teachers"][wildcards.teacher],
        training=config["training"],
        text=config["text"],
        checkpoints=lambda wildcards: checkpoint_dir(
            "train_teacher", wildcards.teacher, f"fold{wildcards.fold}"
        ),
    script:
        "../scripts/train_teacher.py"


rule teacher_logits:
    input:
        base=get_base_inputs,
        adapter="results/teachers/{teacher}/fold{fold}/adapter",
        train="results/data/train.parquet",
        folds="results/folds/folds_clean.json",
    output:
        "results/teachers/{teacher}/fold{fold}/logits/shard{shard}.parquet",
    log:
        "results/logs/teacher_logits/{teacher}/fold{fold}/shard{shard}.log",
    benchmark:
        "results/benchmarks/teacher_logits/{teacher}/fold{fold}/shard{shard}.tsv"
    priority: PRIORITY["teacher_logits"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        base=lambda wildcards: base_of(wildcards.teacher),
        spec=lambda wildcards: config["teachers"][wildcards.teacher],
        text=config["text"],
        logits=config["teacher_logits"],
        precision=config["training"]["precision"],
    script:
        "../scripts/teacher_logits.py"


rule gather_logits:
    input:
        shards=get_logit_shards,
        folds="results/folds/folds_clean.json",
    output:
        "results/teachers/{teacher}/fold{fold}/logits.parquet",
    log:
        "results/logs/gather_logits/{teacher}/fold{fold}.log",
    priority: PRIORITY["gather_logits"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        rows=config["teacher_logits"]["rows"],
    script:
        "../scripts/gather_logits.py"


rule calibrate_teacher:
    input:
        get_teacher_val_logits,
    output:
        "results/teachers/{teacher}/calibration.json",
    log:
        "results/logs/calibrate_teacher/{teacher}.log",
    priority: PRIORITY["calibrate_teacher"]
    conda:
        "../envs/arena-distill.yaml"
    script:
        "../scripts/calibrate_teacher.py"
