"""Rebuild `.test/small/` from the bundled sample: the first prompt groups of each table
(whole groups, so the folds stay grouped) and the first arena calibration rows.

    python .test/make_small.py

Deterministic: the same sample gives the same tables. The end-to-end tests run on these
files; `snakemake --directory .test --configfile .test/small.yaml` runs them by hand.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parent / "data" / "sample"
PROMPTS = {"train": 48, "extra": 16, "post_pretrain": 8}
CALIBRATION_ROWS = 60


def main() -> None:
    (HERE / "small").mkdir(exist_ok=True)
    for name, prompts in PROMPTS.items():
        frame = pd.read_parquet(SAMPLE / f"{name}.parquet")
        keep = frame[frame["prompt"].isin(sorted(frame["prompt"].unique())[:prompts])]
        keep.to_parquet(HERE / "small" / f"{name}.parquet", index=False)
    calibration = pd.read_parquet(SAMPLE / "arena_calibration.parquet").head(CALIBRATION_ROWS)
    calibration.to_parquet(HERE / "small" / "calibration.parquet", index=False)


if __name__ == "__main__":
    main()
