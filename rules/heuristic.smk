rule heuristic_model:
    input:
        train=paths.table("train"),
        folds=rules.clean_folds.output[0],
    output:
        logits=paths.heuristic_file("logits", "{fold}"),
        val_logits=paths.heuristic_file("val_logits", "{fold}"),
        scored=paths.heuristic_file("scored", "{fold}"),
        model=paths.heuristic_file("model.json", "{fold}"),
        metrics=paths.heuristic_file("metrics.json", "{fold}"),
    log:
        paths.log("heuristic_model", "fold{fold}"),
    benchmark:
        paths.benchmark("heuristic_model", "fold{fold}")
    priority: PRIORITY["heuristic_model"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        teacher_rows=config["teacher_logits"]["rows"],
    script:
        "../scripts/heuristic_model.py"


rule heuristic_test:
    input:
        unpack(get_labelled_test),
        model=rules.heuristic_model.output.model,
    output:
        paths.heuristic_file("scored_test", "{fold}"),
    log:
        paths.log("heuristic_test", "fold{fold}"),
    conda:
        "../envs/arena-distill.yaml"
    script:
        "../scripts/heuristic_test.py"
