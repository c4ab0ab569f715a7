rule init_model:
    input:
        "results/data/train.parquet",
    output:
        directory("results/models/{model}/base"),
    log:
        "results/logs/init_model/{model}.log",
    benchmark:
        "results/benchmarks/init_model/{model}.tsv"
    priority: PRIORITY["init_model"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        spec=lambda wildcards: model_slice(wildcards.model, "model", "seed", "tiny"),
        tokenizer=config["tokenizer"],
    script:
        "../scripts/init_model.py"


rule post_pretrain:
    input:
        source=get_model_source,
        pairs="results/data/post_pretrain.parquet",
    output:
        adapter=directory("results/models/{model}/post_pretrain/adapter"),
        metrics="results/models/{model}/post_pretrain/metrics.json",
        dev_logits="results/models/{model}/post_pretrain/dev_logits.parquet",
    log:
        "results/logs/post_pretrain/{model}.log",
    benchmark:
        "results/benchmarks/post_pretrain/{model}.tsv"
    priority: PRIORITY["post_pretrain"]
    conda:
        "../envs/arena-distill.yaml"
    params:
        source=lambda wildcards: {"path": source_path(wildcards.model)},
        spec=lambda wildcards: model_slice(
            wildcards.model, "seed", "load_in_bits", "lora", "training"
        ),
        settings=lambda wildcards: post_pretrain_settings(wildcards.model),
        training=config["training"],
        text=config["text"],
        checkpoints=lambda wildcards: checkpoint_dir("post_pretrain", wildcards.model),
    script:
        "../scripts/post_pretrain.py"
