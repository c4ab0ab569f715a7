"""Batches of token sequences: length-grouped for training, token-budgeted for scoring,
packed under a token budget where the model reads several rows as one sequence.

Pairs range from a few dozen to `max_length` tokens. Padding every batch to its longest
member wastes compute in proportion to the length spread inside the batch, so the padded
planners put sequences of similar length together; packing (`arena_distill.modeling.packing`) pads
nothing and only needs the rows cut into budgets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int, group_batches: int = 50) -> list[list[int]]:
    """Row indices of one epoch's batches, similar lengths together, in random order.

    Rows are shuffled, cut into groups of `group_batches` batches, sorted by length
    inside each group, split into batches, and the batches are shuffled. The result
    depends only on (`lengths`, `batch_size`, `seed`, `epoch`), so a resumed run or
    another process replays exactly the same plan.
    """
    lengths = np.asarray(lengths)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    group = batch_size * group_batches
    batches = []
    for start in range(0, len(order), group):
        chunk = order[start : start + group]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size].tolist() for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def random_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Row indices of one epoch's batches in plain shuffled order (the original's sampler).

    Pads each batch to its longest row, so it costs more than `length_grouped_batches`;
    like it, a pure function of (rows, `batch_size`, `seed`, `epoch`).
    """
    order = np.random.default_rng([seed, epoch]).permutation(len(lengths))
    return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]


def token_budget_batches(lengths: Sequence[int], max_tokens: int, max_rows: int | None = None) -> list[list[int]]:
    """Row indices sorted by length (longest first), cut so rows × longest ≤ `max_tokens`.

    A row longer than the budget gets a batch of its own rather than an error: the budget
    bounds padding waste, the model's context bounds the length.
    """
    lengths = np.asarray(lengths)
    order = np.argsort(-lengths, kind="stable")
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order.tolist():
        longest = lengths[current[0]] if current else lengths[index]
        full = max_rows is not None and len(current) >= max_rows
        if current and (full or (len(current) + 1) * longest > max_tokens):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def packed_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Row indices cut into packs of at most `max_tokens` tokens in all (first fit, longest first).

    Any order of the rows gives the same summed loss, so the rows are placed to fill each pack:
    longest first, each into the first pack with room, a new pack when none has. A row longer
    than the budget gets a pack of its own. Deterministic: ties keep the given order.
    """
    lengths = np.asarray(lengths)
    packs: list[list[int]] = []
    room: list[int] = []
    for index in np.argsort(-lengths, kind="stable").tolist():
        size = int(lengths[index])
        target = next((i for i, free in enumerate(room) if free >= size), None)
        if target is None:
            packs.append([index])
            room.append(max_tokens - size)
        else:
            packs[target].append(index)
            room[target] -= size
    return packs


def pad_right(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`input_ids` and `attention_mask` of right-padded sequences.

    Right padding with pad = EOS is what the sequence-classification heads expect: they
    read the last token that is not the pad id.
    """
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask
