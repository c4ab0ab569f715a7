"""Models and what feeds them: building and loading classifiers, the tokenizer, batches, packing, forward passes, devices."""
