"""Batch planning: every row once, similar lengths together, the same plan every time."""

import numpy as np
import torch

from arena_distill.modeling.batching import length_grouped_batches, pad_right, token_budget_batches


def test_length_grouped_batches_partition_and_repeat():
    lengths = np.random.default_rng(0).integers(5, 300, 1000)
    plan = length_grouped_batches(lengths, batch_size=32, seed=7, epoch=0)
    assert sorted(i for batch in plan for i in batch) == list(range(1000))
    assert plan == length_grouped_batches(lengths, batch_size=32, seed=7, epoch=0)
    assert plan != length_grouped_batches(lengths, batch_size=32, seed=7, epoch=1)
    spread = np.mean([np.ptp(lengths[b]) for b in plan])
    random_spread = np.mean([np.ptp(lengths[i : i + 32]) for i in range(0, 1000, 32)])
    assert spread < random_spread / 4


def test_token_budget_batches_respect_the_budget():
    lengths = np.array([10, 200, 50, 60, 300, 5, 120])
    batches = token_budget_batches(lengths, max_tokens=400)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) == 1 or len(batch) * max(lengths[batch]) <= 400
    assert batches[0] == [4]  # the longest first, alone once over budget with a second row


def test_pad_right():
    ids, mask = pad_right([[5, 6, 7], [8]], pad_id=1)
    assert ids.tolist() == [[5, 6, 7], [8, 1, 1]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert ids.dtype == torch.long
