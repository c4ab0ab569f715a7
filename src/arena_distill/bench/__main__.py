"""`python -m arena_distill.bench` (`make bench`): builds the tiny default, runs every
benchmark on it and writes `summary.md` and `results.json` under `--out`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from arena_distill import bench
from arena_distill.bench.prediction import prediction_bench
from arena_distill.bench.preset_batches import preset_batch_shares
from arena_distill.bench.summary import Result, summary_markdown
from arena_distill.bench.tiny_default import SAMPLE, Setup, tiny_base
from arena_distill.bench.training import training_bench
from arena_distill.bench.workflow import predict_peak_rss_mib, preset_dry_run_seconds
from arena_distill.data.pairs import encode_rows, with_swaps
from arena_distill.data.tables import read_pairs
from arena_distill.data.text import PairEncoder, TextConfig
from arena_distill.training.tasks import Examples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m arena_distill.bench", description=bench.__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/bench")
    parser.add_argument("--steps", type=int, default=12, help="training steps per loop")
    parser.add_argument("--rows", type=int, default=160, help="pairs scored by each prediction loop")
    parser.add_argument("--threads", type=int, default=1, help="torch threads; 1 as in every demo job (two run side by side on two cores)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    setup = Setup.from_config()
    table, _ = read_pairs(SAMPLE / "train.parquet", with_labels=True)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        tokenizer, base = tiny_base(setup, table.sample(n=min(2000, len(table)), random_state=0), workdir)
        encoder = PairEncoder(tokenizer, TextConfig(max_length=setup.max_length, prompt_tokens=setup.max_length // 2))
        train_rows = with_swaps(table.sample(n=min(len(table), setup.batch_size * args.steps), random_state=1))
        examples = Examples(encode_rows(encoder, train_rows), {"label": train_rows["label"].to_numpy(dtype=np.int64)})
        results = training_bench(setup, examples, base, tokenizer, args.steps, workdir)
        scored = table.sample(n=min(args.rows, len(table)), random_state=2)
        results += prediction_bench(Examples(encode_rows(encoder, scored)), base, tokenizer, setup)
        results += preset_batch_shares()
        results.append(Result("workflow: snakemake -n of the preset", preset_dry_run_seconds(workdir), "s"))
        results.append(
            Result("workflow: peak RSS of python -m arena_distill predict (100 pairs)", predict_peak_rss_mib(base, workdir), "MiB")
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=1))
    (out / "summary.md").write_text(summary_markdown(results))
    print(summary_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
