rule init_model:
    input:
        paths.table("train"),
    output:
        directory(paths.MODEL_BASE),
    log:
        paths.log("init_model", "{model}"),
    benchmark:
        paths.benchmark("init_model", "{model}")
    priority: PRIORITY["init_model"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        spec=lambda wildcards: plan.model_slice(
            wildcards.model, "model", "seed", "tiny"
        ),
        tokenizer=config["tokenizer"],
    script:
        "../scripts/init_model.py"


rule post_pretrain:
    input:
        unpack(get_model_source),
        pairs=paths.table("post_pretrain"),
    output:
        adapter=directory(paths.post_pretrained_adapter("{model}")),
        metrics=f"{paths.POST_PRETRAIN}/metrics.json",
        dev_logits=f"{paths.POST_PRETRAIN}/dev_logits.parquet",
    log:
        paths.log("post_pretrain", "{model}"),
    benchmark:
        paths.benchmark("post_pretrain", "{model}")
    priority: PRIORITY["post_pretrain"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        source=lambda wildcards, input: inputs.as_seen(
            "source", {"path": plan.source_path(wildcards.model)}, input
        ),
        spec=lambda wildcards: plan.model_slice(
            wildcards.model, "seed", "load_in_bits", "lora", "training"
        ),
        settings=lambda wildcards: plan.post_pretrain_settings(wildcards.model),
        training=config["training"],
        text=config["text"],
        checkpoints=lambda wildcards: paths.checkpoint_dir(
            "post_pretrain", wildcards.model
        ),
        curves=lambda wildcards: paths.curves_dir("post_pretrain", wildcards.model),
    script:
        "../scripts/post_pretrain.py"
