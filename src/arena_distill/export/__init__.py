"""What leaves as a model: merging into GPTQ or bitsandbytes weights, the model card, the packaged directory, the Kaggle bundle."""
