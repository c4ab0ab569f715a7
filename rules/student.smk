rule distill_student:
    input:
        unpack(get_distill_inputs),
        base=get_student_base_inputs,
        train="results/data/train.parquet",
        folds="results/folds/folds_clean.json",
    output:
        adapter=directory("results/{student_run}/fold{fold}/adapter"),
        metrics="results/{student_run}/fold{fold}/metrics.json",
        val_logits="results/{student_run}/fold{fold}/val_logits.parquet",
    log:
        "results/logs/distill_student/{student_run}/fold{fold}.log",
    benchmark:
        "results/benchmarks/distill_student/{student_run}/fold{fold}.tsv"
    priority: PRIORITY["distill_student"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        base=student_base,
        teacher_logits=get_teacher_logit_tables,
        calibrations=get_teacher_calibrations(),
        spec=config["student"],
        training=config["training"],
        distill=student_distill_params(),
        text=config["text"],
        checkpoints=lambda wildcards: checkpoint_dir(
            "distill_student", wildcards.student_run, f"fold{wildcards.fold}"
        ),
    script:
        "../scripts/distill_student.py"


rule average_adapters:
    input:
        adapters=student_adapters(),
        val_logits=student_val_logits(),
    output:
        directory("results/student/averaged"),
    log:
        "results/logs/average_adapters.log",
    priority: PRIORITY["average_adapters"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        method=config["average"]["method"],
    script:
        "../scripts/average_adapters.py"


rule merge_student:
    input:
        base=get_student_base_inputs,
        adapter="results/student/averaged",
    output:
        directory("results/student/merged"),
    log:
        "results/logs/merge_student.log",
    benchmark:
        "results/benchmarks/merge_student.tsv"
    priority: PRIORITY["merge_student"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        base=base_of("student"),
        spec=model_slice("student", "seed"),
        dtype=config["merge"]["dtype"],
    script:
        "../scripts/merge_student.py"
