"""The report's figures, drawn from files the run already wrote: no model runs here.

Each function takes plain tables or dicts and returns a matplotlib figure; the `figures`
rule saves them as the report's PNGs. Out-of-fold logits serve the per-row figures
(reliability, confusion, position bias): they are the only predictions on labelled rows
in quantity that no model trained on. They come in both A/B orders, so A/B-swap TTA and
the position bias are read from them directly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.special import softmax

from arena_distill import LABELS
from arena_distill.data.pairs import unswap_probs
from arena_distill.io import atomic_path, read_benchmark
from arena_distill.scoring.logits import LOGIT_COLUMNS

CLASS_NAMES = dict(zip(LABELS, ("A wins", "B wins", "tie")))


def label_shares(labels: np.ndarray) -> np.ndarray:
    """Share of each class (A, B, tie) among integer labels."""
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(LABELS)) / max(len(labels), 1)


def oof_probs(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Out-of-fold rows with their class probabilities as given (`p0..p2`), from the mirror
    mapped back to the given order (`m0..`), and with TTA (`t0..`, the mean of the two)."""
    table = pd.concat(frames, ignore_index=True)
    given = table[~table["swapped"]].sort_values("id").reset_index(drop=True)
    mirror = table[table["swapped"]].sort_values("id").reset_index(drop=True)
    if not given["id"].equals(mirror["id"]):
        raise ValueError("out-of-fold logits lack the mirror of some rows (both A/B orders are written for every row)")
    p = softmax(given[LOGIT_COLUMNS].to_numpy(np.float64), axis=1)
    m = unswap_probs(softmax(mirror[LOGIT_COLUMNS].to_numpy(np.float64), axis=1))
    out = pd.DataFrame({"id": given["id"], "label": given["label"].astype(int)})
    for prefix, probs in (("p", p), ("m", m), ("t", (p + m) / 2)):
        for i in range(len(LABELS)):
            out[f"{prefix}{i}"] = probs[:, i]
    return out


def probs_of(table: pd.DataFrame, prefix: str) -> np.ndarray:
    """The (rows × classes) probabilities `oof_probs` stored under `prefix`."""
    return table[[f"{prefix}{i}" for i in range(len(LABELS))]].to_numpy()


def data_labels_figure(sets: Mapping[str, np.ndarray]) -> Figure:
    """Class shares of each labelled row set: where ties are rare, a model learns to avoid them."""
    fig = Figure(figsize=(7, 3.2))
    ax = fig.subplots()
    names = list(sets)
    left = np.zeros(len(names))
    for i, label in enumerate(LABELS):
        shares = np.array([label_shares(sets[name])[i] for name in names])
        ax.barh(names, shares, left=left, label=CLASS_NAMES[label])
        for y, (x, share) in enumerate(zip(left, shares)):
            if share > 0.06:
                ax.text(x + share / 2, y, f"{share:.0%}", ha="center", va="center", fontsize=8, color="white")
        left += shares
    ax.set_yticks(range(len(names)), [f"{name} ({len(sets[name]):,} rows)" for name in names])
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of rows")
    ax.legend(ncol=3, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def learning_curves_figure(runs: Mapping[str, Mapping]) -> Figure:
    """Training loss (solid, a point every tenth of the run) and validation loss (dots) of
    each run, against the share of the run done, so runs of different lengths compare."""
    fig = Figure(figsize=(7, 3.8))
    ax = fig.subplots()
    for i, (name, metrics) in enumerate(runs.items()):
        color = f"C{i % 10}"
        steps = max(int(metrics.get("steps") or 1), 1)
        curve = metrics.get("train_curve") or []
        ax.plot([p["step"] / steps for p in curve], [p["train_loss"] for p in curve], color=color, label=f"{name}")
        history = [h for h in metrics.get("history", []) if "val_loss" in h]
        ax.plot([h["step"] / steps for h in history], [h["val_loss"] for h in history], "o", color=color)
    ax.set_xlabel("share of the run (steps)")
    ax.set_ylabel("loss (line: training, dot: validation)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def cv_figure(metrics: Mapping) -> Figure:
    """Log loss (TTA) of every model on the rows it is judged on, beside those rows' class prior."""
    bars: list[tuple[str, float, float | None]] = []
    for teacher, report in metrics.get("teachers", {}).items():
        bars += [(f"{teacher} fold {k} (OOF)", m["log_loss_tta"], m["prior_log_loss"]) for k, m in enumerate(report["folds"])]
    for run in ("student", "student_fresh_init"):
        if run in metrics:
            label = "student" if run == "student" else "fresh-init student"
            bars += [(f"{label} fold {k} (OOF)", m["log_loss_tta"], m["prior_log_loss"]) for k, m in enumerate(metrics[run]["folds"])]
    bars += [(f"{name} (holdout)", m["log_loss_tta"], m["prior_log_loss"]) for name, m in metrics.get("holdout", {}).items()]
    if "test" in metrics:
        bars.append(("submission (labelled arena rows)", metrics["test"]["log_loss_tta"], metrics["test"]["prior_log_loss"]))
    fig = Figure(figsize=(7, 0.32 * len(bars) + 1.2))
    ax = fig.subplots()
    y = np.arange(len(bars))
    ax.barh(y, [b[1] for b in bars], color=["C0" if "OOF" in b[0] else "C1" if "holdout" in b[0] else "C2" for b in bars])
    ax.plot([b[2] for b in bars], y, "k|", markersize=12, label="class prior of the same rows")
    for yi, (_, value, _) in zip(y, bars):
        ax.text(value, yi, f" {value:.3f}", va="center", fontsize=7)
    ax.set_yticks(y, [b[0] for b in bars], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("log loss with A/B-swap TTA (lower is better)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def reliability_figure(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> Figure:
    """Per class: the observed frequency of the class among rows binned by its predicted
    probability; a calibrated model lies on the diagonal. Marker size: rows in the bin."""
    fig = Figure(figsize=(9, 3.2))
    axes = fig.subplots(1, len(LABELS), sharey=True)
    edges = np.linspace(0, 1, bins + 1)
    for i, (ax, label) in enumerate(zip(axes, LABELS)):
        which = np.clip(np.digitize(probs[:, i], edges) - 1, 0, bins - 1)
        counts = np.bincount(which, minlength=bins)
        seen = counts > 0
        predicted = np.bincount(which, weights=probs[:, i], minlength=bins)[seen] / counts[seen]
        observed = np.bincount(which, weights=(labels == i).astype(float), minlength=bins)[seen] / counts[seen]
        ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
        ax.plot(predicted, observed, "-", color=f"C{i}")
        ax.scatter(predicted, observed, s=8 + 120 * counts[seen] / counts.max(), color=f"C{i}")
        ax.set_title(CLASS_NAMES[label])
        ax.set_xlabel("predicted probability")
    axes[0].set_ylabel("observed frequency")
    fig.tight_layout()
    return fig


def confusion_figure(probs: np.ndarray, labels: np.ndarray) -> Figure:
    """Rows by true class (rows of the matrix) and most probable class (columns)."""
    matrix = np.zeros((len(LABELS), len(LABELS)), dtype=np.int64)
    np.add.at(matrix, (labels, probs.argmax(axis=1)), 1)
    fig = Figure(figsize=(4, 3.6))
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    names = [CLASS_NAMES[label] for label in LABELS]
    ax.set_xticks(range(len(LABELS)), names)
    ax.set_yticks(range(len(LABELS)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (r, c), count in np.ndenumerate(matrix):
        ax.text(c, r, f"{count:,}", ha="center", va="center", color="white" if count > matrix.max() / 2 else "black")
    fig.tight_layout()
    return fig


def class_shares_figure(sets: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> Figure:
    """Mean predicted probability of each class beside its true share, per row set (`name`
    → (probabilities, labels)): a model that never predicts ties shows it here first."""
    fig = Figure(figsize=(4 * len(sets), 3.2))
    axes = fig.subplots(1, len(sets), sharey=True, squeeze=False)
    x = np.arange(len(LABELS))
    for ax, (name, (probs, labels)) in zip(axes[0], sets.items()):
        ax.bar(x - 0.2, label_shares(labels), 0.4, label="true share", color="grey")
        ax.bar(x + 0.2, probs.mean(axis=0), 0.4, label="mean predicted", color="C0")
        ax.set_xticks(x, [CLASS_NAMES[label] for label in LABELS])
        ax.set_title(f"{name} ({len(labels):,} rows)", fontsize=9)
    axes[0][0].set_ylabel("share")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def position_bias_figure(table: pd.DataFrame) -> Figure:
    """P(A wins) of each pair as given against the same pair shown in the other order
    (its P(B wins) there); a model without position bias lies on the diagonal. The title
    gives the flip rate: pairs whose most probable outcome changes with the order."""
    given, mirror = probs_of(table, "p"), probs_of(table, "m")
    flips = float(np.mean(given.argmax(axis=1) != mirror.argmax(axis=1)))
    bias = float(np.mean(given[:, 0] - given[:, 1]))
    fig = Figure(figsize=(4.2, 4))
    ax = fig.subplots()
    ax.hexbin(given[:, 0], mirror[:, 0], gridsize=30, bins="log", cmap="Blues", extent=(0, 1, 0, 1))
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
    ax.set_xlabel("P(A wins), pair as given")
    ax.set_ylabel("P(A wins), pair mirrored")
    ax.set_title(f"flip rate {flips:.1%}, mean P(A) - P(B) {bias:+.3f}", fontsize=9)
    fig.tight_layout()
    return fig


def read_benchmarks(files: Iterable[str | Path]) -> pd.DataFrame:
    """One row per benchmarked job: its name (the path under `results/benchmarks`), wall seconds
    and max RSS (NaN where not measured)."""
    rows = []
    for path in sorted(map(Path, files)):
        measured = read_benchmark(path)
        if measured:
            job = path.with_suffix("").as_posix().split("benchmarks/", 1)[-1]
            rows.append({"job": job, **{key: math.nan if value is None else value for key, value in measured.items()}})
    return pd.DataFrame(rows, columns=["job", "seconds", "max_rss_mib"])


def job_resources_figure(jobs: pd.DataFrame) -> Figure:
    """Wall time and peak memory of each job (Snakemake's `benchmark:` files)."""
    jobs = jobs.sort_values("seconds")
    fig = Figure(figsize=(9, 0.22 * len(jobs) + 1.2))
    time_ax, rss_ax = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(jobs))
    time_ax.barh(y, jobs["seconds"], color="C0")
    rss_ax.barh(y, jobs["max_rss_mib"], color="C1")
    time_ax.set_yticks(y, jobs["job"], fontsize=7)
    time_ax.set_xlabel(f"wall seconds (all jobs: {jobs['seconds'].sum():,.0f} s)")
    rss_ax.set_xlabel("max RSS (MiB)")
    fig.tight_layout()
    return fig


def save(fig: Figure, path: str | Path) -> None:
    """Write the figure as a PNG, whole or not at all."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
