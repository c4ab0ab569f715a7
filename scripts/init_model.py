"""Rule init_model: a `tiny:` spec -> a random-init HF checkpoint with its own BPE tokenizer."""

import pandas as pd

from arena_distill.data.text import format_pair
from arena_distill.logs import script_logging
from arena_distill.modeling.models import ModelSpec, build_tiny_model, save_model
from arena_distill.modeling.tokenizer import train_bpe_tokenizer

with script_logging(snakemake.log[0]) as log:
    spec = snakemake.params.spec
    settings = snakemake.params.tokenizer
    train = pd.read_parquet(snakemake.input[0])
    sample = train.sample(n=min(settings["max_texts"], len(train)), random_state=spec["seed"])
    texts = [format_pair(*row) for row in sample[["prompt", "response_a", "response_b"]].itertuples(index=False)]
    tokenizer = train_bpe_tokenizer(texts, vocab_size=settings["vocab_size"])
    log.info("trained a BPE tokenizer of %d tokens on %d texts", len(tokenizer), len(texts))
    model = build_tiny_model(ModelSpec(spec["model"]).arch, tokenizer, spec["tiny"], seed=spec["seed"])
    log.info("built %s with %d parameters", type(model).__name__, model.num_parameters())
    save_model(model, tokenizer, snakemake.output[0])
