rule heuristic_model:
    input:
        unpack(labelled_test_inputs),
        train="results/data/train.parquet",
        folds="results/folds/folds_clean.json",
    output:
        logits="results/heuristic/fold{fold}/logits.parquet",
        val_logits="results/heuristic/fold{fold}/val_logits.parquet",
        scored="results/heuristic/fold{fold}/scored.parquet",
        metrics="results/heuristic/fold{fold}/metrics.json",
    log:
        "results/logs/heuristic_model/fold{fold}.log",
    benchmark:
        "results/benchmarks/heuristic_model/fold{fold}.tsv"
    priority: PRIORITY["heuristic_model"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        teacher_rows=config["teacher_logits"]["rows"],
    script:
        "../scripts/heuristic_model.py"
