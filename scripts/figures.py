"""Rule figures: the report's PNGs from the evaluation, the out-of-fold logits, the training
metrics and the jobs' benchmark files."""

import pandas as pd

from arena_distill.io import read_json, read_parquet, read_table
from arena_distill.logs import script_logging
from arena_distill.report import figures
from arena_distill.scoring.metrics import labelled_rows

with script_logging(snakemake.log[0]) as log:
    out = snakemake.output
    train = read_parquet(snakemake.input.train)
    holdout = train["id"].isin(read_json(snakemake.input.folds).get("holdout_ids", []))
    sets = {f"train: {source}": rows["label"].to_numpy() for source, rows in train[~holdout].groupby("source")}
    if holdout.any():
        sets["holdout prompts"] = train.loc[holdout, "label"].to_numpy()
    for name in ("post_pretrain", "calibration"):
        if name in snakemake.input.keys():
            sets[name.replace("_", "-")] = read_parquet(snakemake.input[name])["label"].to_numpy()
    shares = {}
    oof = figures.oof_probs([read_parquet(path) for path in snakemake.input.student_val_logits])
    shares["students out of fold (TTA)"] = (figures.probs_of(oof, "t"), oof["label"].to_numpy())
    if "test_labels" in snakemake.input.keys():
        probs, truth = labelled_rows(pd.read_csv(snakemake.input.submission), read_table(snakemake.input.test_labels))
        sets["labelled test rows"] = truth
        shares["submission on the labelled test rows"] = (probs, truth)
    runs = snakemake.params.runs
    drawn = {
        out.data_labels: figures.data_labels_figure(sets),
        out.teacher_curves: figures.learning_curves_figure({k: read_json(p) for k, p in runs["teachers"].items()}),
        out.student_curves: figures.learning_curves_figure({k: read_json(p) for k, p in runs["student"].items()}),
        out.cv: figures.cv_figure(read_json(snakemake.input.metrics)),
        out.reliability: figures.reliability_figure(figures.probs_of(oof, "t"), oof["label"].to_numpy()),
        out.confusion: figures.confusion_figure(figures.probs_of(oof, "t"), oof["label"].to_numpy()),
        out.position_bias: figures.position_bias_figure(oof),
        out.class_shares: figures.class_shares_figure(shares),
        out.job_resources: figures.job_resources_figure(figures.read_benchmarks(snakemake.input.benchmarks)),
    }
    for path, fig in drawn.items():
        figures.save(fig, path)
        log.info("wrote %s", path)
