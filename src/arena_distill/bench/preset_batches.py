"""The preset's training micro-batches on the lengths of the bundled real arena votes: the
share of real (not padding) tokens, padded as the original batches them and packed, each
global batch split over the profile's GPUs as the training loop splits it.
"""

from __future__ import annotations

import numpy as np

from arena_distill.bench.summary import Result
from arena_distill.bench.tiny_default import REPO, SAMPLE
from arena_distill.data.tables import read_pairs
from arena_distill.data.text import TextConfig, approximate_lengths
from arena_distill.modeling.packing import model_inputs
from arena_distill.training.config import BATCH_PLANS, TrainConfig, micro_batches
from arena_distill.workflow.config import PRESET, effective_config, rule_resources


def arena_lengths(text: dict, max_length: int) -> np.ndarray:
    """Token lengths (approximate: `text.approximate_length`) of the bundled real arena votes
    in both A/B orders, at the `text` block's word cuts and `max_length`."""
    rows, _ = read_pairs(SAMPLE / "arena_calibration.parquet", with_labels=True)
    return np.array(approximate_lengths(rows, TextConfig.of(text, max_length)) * 2, dtype=np.int64)  # a mirror has its pair's length


def real_token_share(lengths: np.ndarray, config: TrainConfig, processes: int, epochs: int = 3) -> tuple[float, int]:
    """(real tokens / tokens computed, forward passes) of the training loop's micro-batches over
    `epochs` of the batch plan: each global batch split over `processes` as the loop splits it,
    and each micro-batch built by the loop's own `model_inputs`."""
    real = computed = passes = 0
    for epoch in range(epochs):
        for global_rows in BATCH_PLANS[config.batching](lengths, config.batch_size, config.seed, epoch):
            for rank in range(processes):
                for micro in micro_batches(global_rows[rank::processes], lengths, config):
                    inputs = model_inputs([[1] * int(lengths[i]) for i in micro], pad_id=0, device="cpu", packed=config.packing)
                    real += int(lengths[micro].sum())
                    computed += inputs["input_ids"].numel()
                    passes += 1
    return real / computed, passes


def preset_batch_shares() -> list[Result]:
    """The preset's training micro-batches for the student on the real arena lengths: padded
    (its micro-batch of rows, the original's random batches) against packed."""
    preset = effective_config([PRESET])
    training = {**preset["training"], **preset["student"].get("training", {})}
    lengths = arena_lengths(preset["text"], preset["text"]["train_max_length"])
    processes = int(rule_resources(REPO / "profiles" / "slurm", "distill_student").get("gpu", 1))
    keys = ("batch_size", "micro_batch_size", "micro_batch_tokens", "batching")
    shares = {}
    for packing in (False, True):
        config = TrainConfig(learning_rate=1.0, packing=packing, **{key: training[key] for key in keys})
        shares[packing] = real_token_share(lengths, config, processes)
    (padded, padded_passes), (packed, packed_passes) = shares[False], shares[True]
    where = (
        f"{len(lengths):,} rows (real arena votes, both orders, mean {lengths.mean():.0f} tokens, "
        f"{(lengths == lengths.max()).mean():.0%} at the cap), {training['batch_size']} per step over {processes} GPUs"
    )
    return [
        Result(
            "training: real-token share of the preset's micro-batches, padded",
            padded,
            "share",
            note=f"{training['micro_batch_size']} rows per pass, {training['batching']} batches; {padded_passes:,} passes; {where}",
        ),
        Result(
            "training: real-token share of the preset's micro-batches, packed",
            packed,
            "share",
            "padded",
            packed / padded,
            f"the student's packs of at most {training['micro_batch_tokens']:,} tokens; {packed_passes:,} passes",
        ),
    ]
