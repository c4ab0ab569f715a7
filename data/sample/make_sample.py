"""Rebuild the bundled sample from the project's source files (see README.md here).

    python data/sample/make_sample.py /path/to/shared/data

Deterministic: the same sources give byte-identical outputs. No prompt is split between the
train sample, the extra set and the post-pretraining pairs. Many prompts with a few of their pairs each, not
a few whole prompt groups: with ~129 pairs per prompt (every model against one baseline
answer), a sample of few prompts lets a model memorize each prompt's baseline answer and
teaches little that carries over to unseen prompts.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
SEED = 2025
BASE_PROMPTS, EXTRA_PROMPTS, POST_PRETRAIN_PROMPTS = 480, 60, 144
ROWS_PER_PROMPT = {"train": 21, "extra": 21, "post_pretrain": 28}  # of the ~129 judged pairs each prompt has
KAGGLE_TRAIN = ["id", "model_a", "model_b", "prompt", "response_a", "response_b", "winner_model_a", "winner_model_b", "winner_tie"]
KAGGLE_TEST = ["id", "prompt", "response_a", "response_b"]
LABELS = ["winner_model_a", "winner_model_b", "winner_tie"]


def main(source: Path) -> None:
    pairs = pd.read_parquet(source / "alpaca_eval_pairs.parquet")
    prompts = np.random.default_rng(SEED).permutation(sorted(pairs["question_id"].unique()))
    splits = {
        "train": prompts[:BASE_PROMPTS],
        "extra": prompts[BASE_PROMPTS : BASE_PROMPTS + EXTRA_PROMPTS],
        "post_pretrain": prompts[BASE_PROMPTS + EXTRA_PROMPTS : BASE_PROMPTS + EXTRA_PROMPTS + POST_PRETRAIN_PROMPTS],
    }
    rng = np.random.default_rng(SEED)
    for name, ids in splits.items():
        rows = pairs[pairs["question_id"].isin(ids)].sort_values(["question_id", "id"])
        per_prompt = ROWS_PER_PROMPT[name]
        keep = [rng.choice(group, size=min(per_prompt, len(group)), replace=False) for _, group in rows.groupby("question_id")["id"]]
        rows = rows[rows["id"].isin(np.concatenate(keep))]
        rows[KAGGLE_TRAIN].to_parquet(HERE / f"{name}.parquet", index=False, compression="zstd")

    arena = pd.read_parquet(source / "arena_train.parquet")
    arena[KAGGLE_TEST].to_csv(HERE / "test.csv", index=False)
    arena[["id", *LABELS]].to_csv(HERE / "test_labels.csv", index=False)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
