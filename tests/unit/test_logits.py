"""Shards partition a fold's rows; gathering catches gaps and duplicates; batching does not change logits."""

import numpy as np
import pandas as pd
import pytest
import torch

from arena_distill.errors import DataError, ShardError
from arena_distill.io import write_parquet
from arena_distill.modeling.inference import predict_logits
from arena_distill.scoring.logits import gather_shards, logits_frame, shard_of
from arena_distill.student.distillation import teacher_targets
from tests.unit.synthetic import PAD, marker_pairs, tiny_classifier


def rows(ids):
    return pd.DataFrame({"id": np.repeat(ids, 2), "swapped": np.tile([False, True], len(ids))})


def scored(frame):
    return logits_frame(frame, np.zeros((len(frame), 3)))


def test_shards_partition_the_rows():
    frame = rows(np.arange(101) * 3).sample(frac=1, random_state=0)
    parts = [shard_of(frame, 4, s) for s in range(4)]
    keys = pd.concat(parts)[["id", "swapped"]]
    assert len(keys) == len(frame) and not keys.duplicated().any()
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert shard_of(frame, 4, 2).equals(shard_of(frame.sample(frac=1, random_state=1), 4, 2))
    with pytest.raises(ValueError):
        shard_of(frame, 4, 4)


def test_gather_accepts_an_exact_cover():
    ids = [3, 1, 2]
    frame = rows(ids)
    gathered = gather_shards({f"s{s}": scored(shard_of(frame, 2, s)) for s in range(2)}, ids)
    assert gathered[["id", "swapped"]].values.tolist() == [[1, False], [1, True], [2, False], [2, True], [3, False], [3, True]]


@pytest.mark.parametrize("damage", ["truncated", "overwritten"])
def test_a_damaged_logits_file_is_named_by_its_consumer(tmp_path, damage):
    path = tmp_path / "shard0.parquet"
    write_parquet(scored(rows([1, 2, 3])), path)
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2] if damage == "truncated" else b"\0" * len(content))
    with pytest.raises(DataError, match=rf"truncated or corrupted: delete it and rerun the rule that writes it \(file {path}\)"):
        teacher_targets(rows([1, 2, 3]), {"llama": [str(path)]}, {})


def test_gather_rejects_a_missing_row():
    frame = rows([1, 2, 3])
    shards = {"s0": scored(shard_of(frame, 2, 0)), "s1": scored(shard_of(frame, 2, 1).iloc[1:])}
    with pytest.raises(ShardError, match="not scored") as error:
        gather_shards(shards, [1, 2, 3])
    assert error.value.row is not None


def test_gather_rejects_a_row_scored_twice():
    frame = rows([1, 2, 3])
    shards = {"s0": scored(shard_of(frame, 2, 0)), "s1": scored(frame)}
    with pytest.raises(ShardError, match="scored 2 times"):
        gather_shards(shards, [1, 2, 3])


def test_gather_rejects_rows_of_another_fold():
    with pytest.raises(ShardError, match="not a row of this fold"):
        gather_shards({"s0": scored(rows([1, 2, 9]))}, [1, 2])


def test_batched_length_sorted_logits_equal_one_at_a_time():
    model = tiny_classifier(seed=3, lora=False)
    sequences = marker_pairs(40, seed=4).ids
    batched = predict_logits(model, sequences, pad_id=PAD, max_tokens=200)
    single = np.stack([predict_logits(model, [seq], pad_id=PAD, max_tokens=200)[0] for seq in sequences])
    assert np.abs(batched - single).max() < 1e-4
    with torch.no_grad():
        direct = model(input_ids=torch.tensor([sequences[0]])).logits[0].numpy()
    assert np.allclose(single[0], direct, atol=1e-6)
