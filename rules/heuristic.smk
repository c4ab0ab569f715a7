rule heuristic_model:
    input:
        train="results/data/train.parquet",
        folds="results/folds/folds_clean.json",
    output:
        logits="results/heuristic/fold{fold}/logits.parquet",
        val_logits="results/heuristic/fold{fold}/val_logits.parquet",
        scored="results/heuristic/fold{fold}/scored.parquet",
        model="results/heuristic/fold{fold}/model.json",
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


rule heuristic_test:
    input:
        unpack(labelled_test_inputs),
        model=rules.heuristic_model.output.model,
    output:
        "results/heuristic/fold{fold}/scored_test.parquet",
    log:
        "results/logs/heuristic_test/fold{fold}.log",
    conda:
        "../envs/arena-distill.yaml"
    script:
        "../scripts/heuristic_test.py"
