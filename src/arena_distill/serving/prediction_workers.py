"""Scoring test pairs with one process per device, as the 1st-place inference did on
Kaggle's two T4s: each process loads the model on its own GPU and scores its share of the
pairs; the shares are joined in the input's order.

The shares are balanced by length (longest pair first, each to the share with the fewest
tokens so far), so both GPUs finish together even when the long pairs cluster in the file.
A pair's probabilities do not depend on which process scores it, nor on its batch mates (up
to float rounding), so any split gives the one-process result.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from arena_distill.data.text import TextConfig, approximate_lengths
from arena_distill.errors import DeviceError
from arena_distill.scoring.calibration import PairScaling

log = logging.getLogger(__name__)

DEVICES = ("auto", "cuda", "cpu")


def worker_devices(device: str, workers: int | None, gpus: int) -> list[str]:
    """The device of each worker process. `device`: `cuda` needs `gpus` > 0 (one worker per
    GPU by default, at most one per GPU), `cpu` runs `workers` processes (default 1) on the
    CPU, `auto` is `cuda` when a GPU is visible, else `cpu`."""
    if device not in DEVICES:
        raise ValueError(f"--device must be one of {DEVICES}, got {device!r}")
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if device == "auto":
        device = "cuda" if gpus else "cpu"
    if device == "cpu":
        return ["cpu"] * (workers or 1)
    if not gpus:
        raise DeviceError("no GPU is visible (CUDA_VISIBLE_DEVICES, driver); pass --device cpu to score on the CPU")
    if workers is not None and workers > gpus:
        raise DeviceError(f"--workers {workers} asks for more processes than the {gpus} visible GPUs (one process per GPU)")
    return [f"cuda:{index}" for index in range(workers or gpus)]


def balanced_shares(lengths: Sequence[int], n: int) -> list[np.ndarray]:
    """Row positions of `n` shares with near-equal total length: longest first, each row to
    the share with the least so far (ties to the lowest share); each share in input order."""
    totals, shares = [0] * n, [[] for _ in range(n)]
    for position in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        lightest = min(range(n), key=lambda k: (totals[k], k))
        shares[lightest].append(position)
        totals[lightest] += lengths[position]
    return [np.array(sorted(share), dtype=np.int64) for share in shares]


def score_share(
    model_dir: str,
    rows: pd.DataFrame,
    text: Mapping[str, Any],
    settings: Mapping[str, Any],
    calibration: PairScaling | None,
    threads: int,
    worker: int = 0,
) -> pd.DataFrame:
    """One worker: the submission-schema predictions of its rows on `settings["device"]`."""
    import torch

    from arena_distill.serving.prediction import predict_table

    logging.basicConfig(level=logging.INFO, format=f"%(levelname)s worker {worker} ({settings['device']}): %(message)s")
    torch.set_num_threads(threads)
    return predict_table(model_dir, rows, text, settings, calibration)


def predict_on_workers(
    model_dir: str | Path,
    rows: pd.DataFrame,
    text: Mapping[str, Any],
    settings: Mapping[str, Any],
    calibration: PairScaling | None,
    devices: Sequence[str],
) -> pd.DataFrame:
    """`prediction.predict_table` of `rows` split over one process per entry of `devices`
    (in this process when there is one), in the rows' order. CPU workers share the cores."""
    threads = max(1, (os.cpu_count() or 1) // len(devices))
    if len(devices) == 1:
        return score_share(str(model_dir), rows, text, {**settings, "device": devices[0]}, calibration, threads)
    lengths = approximate_lengths(rows, TextConfig.of(text, max(settings["max_lengths"])))
    shares = balanced_shares(lengths, len(devices))
    log.info("%d pairs over %d workers (%s): %s pairs each", len(rows), len(devices), ", ".join(devices), [len(s) for s in shares])
    with ProcessPoolExecutor(len(devices), mp_context=get_context("spawn")) as pool:
        futures = [
            pool.submit(
                score_share,
                str(model_dir),
                rows.iloc[share].reset_index(drop=True),
                dict(text),
                {**settings, "device": device},
                calibration,
                threads,
                worker,
            )
            for worker, (share, device) in enumerate(zip(shares, devices))
        ]
        parts = [future.result() for future in futures]
    joined = pd.concat(parts, ignore_index=True).set_index("id").loc[rows["id"].to_numpy()].reset_index()
    return joined
