"""`make bench`: the embedded default's speed, each number a ratio against a baseline measured
in the same run, on the same tiny model and rows (these machines are shared and noisy, so an
absolute number alone says little).

    python -m arena_distill.bench [--out results/bench] [--steps 12] [--rows 160] [--threads 1]

- **training**: tokens/s of the project's loop (`training.train`) against a plain PyTorch loop
  of the same model, LoRA parametrization, batches and precision; then plain full fine-tuning
  and a small LoRA, so the cost of the default's parametrization is visible, with the loss
  each reaches after the same steps (what it learns per second); and the project's loop
  with its decoder layers compiled (`training.compile`).
- **prediction**: rows/s of `inference.predict_logits` (length-sorted, token-budgeted
  batches) against a per-row Hugging Face loop padded to the max length, with the largest
  probability difference and the share of scored tokens that are not padding.
- **workflow**: the time of `snakemake -n` for the preset, and the peak RSS of a
  `python -m arena_distill predict` run.
- **preset batches**: the share of real (not padding) tokens in the preset's training
  micro-batches on the lengths of the bundled real arena votes, padded as the original
  batches them and packed (`training.packing`); the same rows, split over the profile's GPUs.

Writes `summary.md` and `results.json` under `--out`.
"""
