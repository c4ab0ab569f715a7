"""Rule evaluate: every model of the run against the class prior -> metrics.json + summary.md."""

from pathlib import Path

from arena_distill.io import atomic_path, read_json, write_json
from arena_distill.logs import script_logging
from arena_distill.report.evaluation import evaluate_run, summary_markdown
from arena_distill.workflow import paths


def scored_name(path: str) -> str:
    """`results/eval/holdout/student/fold0.parquet` -> `student/fold0`, the scoring's wildcard."""
    return Path(path).relative_to(paths.HOLDOUT.format(scored="")).with_suffix("").as_posix()


with script_logging(snakemake.log[0]) as log:
    report = evaluate_run(
        teacher_val_logits=snakemake.params.teacher_val_logits,
        student_val_logits=list(snakemake.input.student_val_logits),
        fresh_init_val_logits=list(snakemake.input.fresh_init_val_logits),
        holdout={name: metrics for path in snakemake.input.get("holdout", []) for name, metrics in read_json(path).items()},
        holdout_probs={scored_name(path): path for path in snakemake.input.get("holdout_probs", [])},
        heuristic_val_logits=list(snakemake.input.heuristic_val_logits),
        heuristic_scored=list(snakemake.input.heuristic_scored),
        heuristic_test_scored=list(snakemake.input.heuristic_test_scored),
        judge_scored=snakemake.input.get("judge_scored"),
        submission=snakemake.input.submission,
        test_labels=snakemake.input.get("test_labels"),
        calibration=read_json(snakemake.input.calibration) if "calibration" in snakemake.input.keys() else None,
    )
    summary = summary_markdown(report)
    log.info("\n%s", summary)
    write_json(report, snakemake.output.metrics)
    with atomic_path(snakemake.output.summary) as tmp:
        tmp.write_text(summary)
