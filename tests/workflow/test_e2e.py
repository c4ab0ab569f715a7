"""The tiny DAG for real: every rule runs, outputs are usable, reruns are minimal, bad input fails cleanly."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from arena_distill.workflow.config import effective_config
from arena_distill.workflow.plan import RunPlan
from tests.conftest import copy_of_run, copy_workflow, job_counts, predict_cli, snakemake
from tests.tiny import CALIBRATION_ROWS, N_FOLDS, STUDENT_SIDE, TEACHERS

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def finished_run(tiny_local_run) -> Path:
    return tiny_local_run


def test_tables_follow_the_contract(finished_run):
    train = pd.read_parquet(finished_run / "results/data/train.parquet")
    test = pd.read_parquet(finished_run / "results/data/test.parquet")
    pairs = pd.read_parquet(finished_run / "results/data/post_pretrain.parquet")
    sizes = {name: len(pd.read_parquet(finished_run / f"small/{name}.parquet")) for name in ("train", "extra", "post_pretrain")}
    assert len(train) == sizes["train"] + sizes["extra"] and set(train["source"]) == {"base", "alpaca_extra"}
    assert set(train["label"]) == {0, 1, 2}
    assert list(test.columns) == ["id", "prompt", "response_a", "response_b", "group"] and len(test) == 100
    assert len(pairs) == sizes["post_pretrain"] and not set(pairs["group"]) & set(train["group"])


def test_the_resource_figure_reads_the_benchmark_of_every_benchmarked_job(finished_run):
    """`RunPlan.benchmarks` (the figures rule's inputs) names exactly the files the run's jobs wrote."""
    written = {path.relative_to(finished_run).as_posix() for path in (finished_run / "results" / "benchmarks").rglob("*.tsv")}
    assert set(RunPlan(effective_config([finished_run / "small.yaml"])).benchmarks()) == written


def test_every_training_job_writes_tensorboard_curves(finished_run):
    """`tensorboard --logdir results/tensorboard` shows each post-pretraining, teacher fold and
    student fold run, with the validation losses its metrics.json records."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    plan = RunPlan(effective_config([finished_run / "small.yaml"]))
    runs = plan.training_runs()
    written = {path.parent for path in (finished_run / "results" / "tensorboard").rglob("events.*")}
    assert len(written) == len(runs["teachers"]) + len(runs["student"])
    for metrics_file in [path for panel in runs.values() for path in panel.values()]:
        parts = Path(metrics_file).parent.relative_to("results").parts  # models/<m>/post_pretrain, teachers/<t>/fold<k>, <run>/fold<k>
        rule, names = {"models": ("post_pretrain", parts[1:2]), "teachers": ("train_teacher", parts[1:])}.get(
            parts[0], ("distill_student", parts)
        )
        events = EventAccumulator(str(finished_run / "results" / "tensorboard" / rule / Path(*names)))
        events.Reload()
        assert {"train/loss", "train/learning_rate", "train/tokens_per_second", "val/loss", "val/accuracy"} <= set(events.Tags()["scalars"])
        history = json.loads((finished_run / metrics_file).read_text())["history"]
        assert [(e.step, round(e.value, 5)) for e in events.Scalars("val/loss")] == [(h["step"], round(h["val_loss"], 5)) for h in history]


def test_folds_are_grouped_cleaned_and_logged(finished_run):
    raw = json.loads((finished_run / "results/folds/folds.json").read_text())
    clean = json.loads((finished_run / "results/folds/folds_clean.json").read_text())
    train = pd.read_parquet(finished_run / "results/data/train.parquet").set_index("id")
    assert raw["n"] == clean["n"] == N_FOLDS and raw["group_by"] == "prompt"
    val_groups = [set(train.loc[fold["val_ids"], "group"]) for fold in clean["folds"]]
    holdout_groups = set(train.loc[clean["holdout_ids"], "group"])
    assert not (val_groups[0] & val_groups[1] or (val_groups[0] | val_groups[1]) & holdout_groups) and holdout_groups
    for before, after, dropped in zip(raw["folds"], clean["folds"], clean["cleaning"]["dropped"]):
        removed = len(before["train_ids"]) - len(after["train_ids"])
        assert removed == sum(v for k, v in dropped.items() if k != "fold") > 0
        assert after["val_ids"] == before["val_ids"]
    log = (finished_run / "results/logs/clean_folds.log").read_text()
    assert "dropped {'empty'" in log


def test_the_llama_teacher_trains_padding_free_and_the_others_padded(finished_run):
    """small.yaml packs the llama teacher's runs (a per-model `training` key); the rest pad."""
    logs = finished_run / "results/logs"
    for log in [logs / "post_pretrain/llama.log", logs / "train_teacher/llama/fold0.log"]:
        assert "in forward passes of packs of at most 512 tokens" in log.read_text(), log
    for log in [logs / "train_teacher/qwen/fold0.log", logs / "distill_student/student/fold0.log"]:
        assert "in forward passes of 16 rows" in log.read_text(), log


@pytest.mark.parametrize("model", ["llama", "qwen", "student"])
def test_tiny_models_load_like_real_checkpoints(finished_run, model):
    path = finished_run / "results/models" / model / "base"
    tokenizer = AutoTokenizer.from_pretrained(path)
    classifier = AutoModelForSequenceClassification.from_pretrained(path)
    assert len(tokenizer) == 1000 and classifier.config.num_labels == 3
    expected = {
        "llama": "LlamaForSequenceClassification",
        "qwen": "Qwen2ForSequenceClassification",
        "student": "Gemma2ForSequenceClassification",
    }
    assert type(classifier).__name__ == expected[model]


@pytest.mark.parametrize("model", ["llama", "qwen", "student"])
def test_post_pretraining_trains_the_classifier_and_is_not_merged(finished_run, model):
    folder = finished_run / f"results/models/{model}/post_pretrain"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["train_loss_last"] < metrics["train_loss_first"] and metrics["val_rows"] == 20
    assert metrics["epochs"] == (2 if model == "student" else 1)  # post_pretrain.models.student of the default
    adapter = json.loads((folder / "adapter/adapter_config.json").read_text())
    assert adapter["task_type"] == "SEQ_CLS" and adapter["base_model_name_or_path"] == f"results/models/{model}/base"
    assert not (finished_run / f"results/models/{model}/post_pretrained").exists()  # no merged copy anywhere


@pytest.mark.parametrize("run", ["teachers/llama/fold0", "teachers/qwen/fold1", "student/fold0"])
def test_fold_runs_start_from_the_post_pretrained_adapter(finished_run, run):
    model = run.split("/")[1] if run.startswith("teachers") else "student"
    metrics = json.loads((finished_run / f"results/{run}/metrics.json").read_text())
    assert metrics["init_adapter"] == f"results/models/{model}/post_pretrain/adapter"
    adapter = json.loads((finished_run / f"results/{run}/adapter/adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == f"results/models/{model}/base"
    fresh = json.loads((finished_run / "results/student_fresh_init/fold0/metrics.json").read_text())
    assert fresh["init_adapter"] is None


@pytest.mark.parametrize("teacher", ["llama", "qwen"])
def test_teachers_trained_on_every_fold(finished_run, teacher):
    for fold in range(N_FOLDS):
        folder = finished_run / f"results/teachers/{teacher}/fold{fold}"
        metrics = json.loads((folder / "metrics.json").read_text())
        for key in ("val_log_loss", "val_accuracy", "train_loss_first", "train_loss_last", "steps", "seconds", "tokens_per_second"):
            assert key in metrics, key
        assert math.isfinite(metrics["val_log_loss"]) and metrics["steps"] > 0
        assert metrics["train_loss_last"] < metrics["train_loss_first"]
        assert (folder / "adapter/adapter_config.json").exists()
        val = pd.read_parquet(folder / "val_logits.parquet")
        assert len(val) == 2 * metrics["val_rows"] and val["swapped"].sum() == metrics["val_rows"]


def test_logits_cover_each_folds_training_rows_in_both_orders(finished_run):
    clean = json.loads((finished_run / "results/folds/folds_clean.json").read_text())
    for teacher in ("llama", "qwen"):
        for fold in clean["folds"]:
            logits = pd.read_parquet(finished_run / f"results/teachers/{teacher}/fold{fold['fold']}/logits.parquet")
            assert sorted(logits["id"].tolist()) == sorted(fold["train_ids"] * 2)
            assert not logits.duplicated(["id", "swapped"]).any()
            assert logits[["logit_a", "logit_b", "logit_tie"]].notna().all().all()
            shards = [
                pd.read_parquet(p)
                for p in sorted((finished_run / f"results/teachers/{teacher}/fold{fold['fold']}/logits").glob("shard*.parquet"))
            ]
            assert len(shards) == 2 and sum(map(len, shards)) == len(logits)


def test_calibration_fits_out_of_fold(finished_run):
    for teacher in ("llama", "qwen"):
        report = json.loads((finished_run / f"results/teachers/{teacher}/calibration.json").read_text())
        assert report["nll_after"] <= report["nll_before"] + 1e-9
        assert len(report["scale"]) == len(report["bias"]) == 3


def test_the_run_shows_no_hugging_face_progress_bars(finished_run):
    """Loading and saving bars redraw with carriage returns: a terminal record or SLURM log fills with them."""
    shown = (finished_run / "run.out").read_text()
    assert "Loading weights" not in shown and "Writing model shards" not in shown


def test_nothing_to_do_after_a_run(finished_run):
    result = snakemake(finished_run, "-n", "--configfile", "small.yaml")
    assert "Nothing to be done" in result.stdout


def test_new_fold_seed_reruns_only_fold_rules(finished_run, tmp_path):
    overlay = tmp_path / "seed.yaml"
    overlay.write_text("folds: {seed: 7}\n")
    result = snakemake(finished_run, "-n", "--configfile", "small.yaml", str(overlay))
    counts = job_counts(result.stdout)
    # New folds retrain every teacher, but post-pretraining and the base models stay.
    teacher_folds = len(TEACHERS) * N_FOLDS
    assert counts == {
        "make_folds": 1,
        "clean_folds": 1,
        "train_teacher": teacher_folds,
        "teacher_logits": 2 * teacher_folds,
        "gather_logits": teacher_folds,
        "calibrate_teacher": 2,
        "heuristic_model": N_FOLDS,
        "heuristic_test": N_FOLDS,
        "prompt_judge": 1,
        **STUDENT_SIDE,
        "all": 1,
    }
    assert "Params have changed since last execution" in result.stdout


def test_one_teachers_settings_rerun_only_that_teacher(finished_run, tmp_path):
    overlay = tmp_path / "lr.yaml"
    overlay.write_text("teachers: {qwen: {learning_rate: 2.0e-3}}\n")
    result = snakemake(finished_run, "-n", "--configfile", "small.yaml", str(overlay))
    assert job_counts(result.stdout) == {
        "train_teacher": N_FOLDS,
        "teacher_logits": 2 * N_FOLDS,
        "gather_logits": N_FOLDS,
        "calibrate_teacher": 1,
        **STUDENT_SIDE,
        "all": 1,
    }


def test_more_shards_rescore_without_retraining(finished_run, tmp_path):
    overlay = tmp_path / "shards.yaml"
    overlay.write_text("teacher_logits: {n_shards: 3}\n")
    result = snakemake(finished_run, "-n", "--configfile", "small.yaml", str(overlay))
    # New shards hold the same logits, but Snakemake cannot know: the students are replanned.
    teacher_folds = len(TEACHERS) * N_FOLDS
    assert job_counts(result.stdout) == {"teacher_logits": 3 * teacher_folds, "gather_logits": teacher_folds, **STUDENT_SIDE, "all": 1}


def test_one_fold_is_rebuilt_by_naming_its_file(finished_run):
    target = "results/teachers/llama/fold1/logits.parquet"
    result = snakemake(finished_run, target, "-n", "--forcerun", "train_teacher", "--configfile", "small.yaml")
    assert job_counts(result.stdout) == {"train_teacher": 1, "teacher_logits": 2, "gather_logits": 1}


def test_students_distilled_on_every_fold(finished_run):
    for fold in range(N_FOLDS):
        folder = finished_run / f"results/student/fold{fold}"
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["teachers"] == ["llama", "qwen", "heuristic"] and math.isfinite(metrics["val_log_loss"])
        assert metrics["train_loss_last"] < metrics["train_loss_first"]
        val = pd.read_parquet(folder / "val_logits.parquet")
        assert len(val) == 2 * metrics["val_rows"] and set(val["fold"]) == {fold}
    averaged = json.loads((finished_run / "results/student/averaged/adapter_config.json").read_text())
    assert averaged["r"] == 16


def test_submission_is_valid_for_the_test_ids(finished_run):
    submission = pd.read_csv(finished_run / "results/submission.csv")
    test = pd.read_parquet(finished_run / "results/data/test.parquet")
    assert list(submission.columns) == ["id", "winner_model_a", "winner_model_b", "winner_tie"]
    assert sorted(submission["id"]) == sorted(test["id"]) and len(submission) == 100
    probs = submission.iloc[:, 1:].to_numpy()
    assert ((probs >= 0) & (probs <= 1)).all() and abs(probs.sum(axis=1) - 1).max() < 1e-6


def test_the_exported_model_is_gptq_and_loads_alone(finished_run):
    model_dir = finished_run / "results/model"
    config = json.loads((model_dir / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "gptq" and config["quantization_config"]["bits"] == 8
    assert json.loads((model_dir / "inference.json").read_text())["predict"]["max_lengths"] == [160]
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    assert type(model).__name__ == "Gemma2ForSequenceClassification"


def test_evaluation_reports_every_model_beside_the_prior(finished_run):
    report = json.loads((finished_run / "results/eval/metrics.json").read_text())
    assert set(report["teachers"]) == {"llama", "qwen"} and len(report["student"]["folds"]) == N_FOLDS
    holdout = json.loads((finished_run / "results/folds/folds_clean.json").read_text())["holdout_ids"]
    names = [
        "merged model (fold average)",
        "submission (quantized)",
        "submission (quantized), calibrated (features)",
        "student fresh-init fold average",
        *(f"student{kind} fold {fold}" for kind in ("", " fresh-init") for fold in range(N_FOLDS)),
    ]
    assert sorted(report["holdout"]) == sorted(names)
    for name in names:
        metrics = report["holdout"][name]
        assert metrics["rows"] == len(holdout) > 0 and math.isfinite(metrics["log_loss_tta"])
    assert len(report["student_fresh_init"]["folds"]) == N_FOLDS
    assert report["test"]["rows"] == 100
    summary = (finished_run / "results/eval/summary.md").read_text()
    for line in (
        "student pooled OOF",
        "student fresh-init pooled OOF",
        "student fold 1 on holdout prompts",
        "student fresh-init fold average on holdout prompts",
        "submission on labelled test rows",
        "heuristic features model pooled OOF",
        "## Options",
    ):
        assert line in summary, line


def test_every_option_is_measured_on_the_holdout_and_the_labelled_test_rows(finished_run):
    options = json.loads((finished_run / "results/eval/metrics.json").read_text())["options"]
    holdout = len(json.loads((finished_run / "results/folds/folds_clean.json").read_text())["holdout_ids"])
    kinds = (
        "exported model, uncalibrated",
        "exported model, calibrated",
        "exported model, calibrated (symmetric, compared only)",
        "best fold",
        "fold ensemble",
        "shrink",
        "no ties",
        "heuristic features model",
        "prompt judge",
    )
    assert all(any(kind in name for name in options["options"]) for kind in kinds), list(options["options"])
    for name, per_set in options["options"].items():
        assert per_set["holdout"]["rows"] == holdout and per_set["test"]["rows"] == 100, name
        assert all(math.isfinite(m["log_loss"]) for m in per_set.values()), name
    # the exported model's calibrated test rows are what the submission holds
    submitted = options["options"]["exported model, calibrated"]["test"]
    assert submitted["log_loss"] == pytest.approx(
        json.loads((finished_run / "results/eval/metrics.json").read_text())["test"]["log_loss_tta"]
    )


def test_the_submission_is_calibrated_on_arena_rows_no_model_trained_on(finished_run, tmp_path):
    fit = json.loads((finished_run / "results/calibration/calibration.json").read_text())
    calibration = pd.read_parquet(finished_run / "results/data/calibration.parquet")
    train = pd.read_parquet(finished_run / "results/data/train.parquet")
    assert fit["method"] == "features" and fit["rows"] == len(calibration) == CALIBRATION_ROWS
    assert not set(calibration["id"]) & set(train["id"])
    assert fit["log_loss_after"] < fit["log_loss_before"]
    # the symmetric calibration is fitted on the same rows for comparison, and not served
    compared = fit["compared"]["symmetric"]
    assert compared["method"] == "symmetric" and compared["rows"] == CALIBRATION_ROWS and compared["terms"] is None
    assert fit["terms"]["penalty"] > 0 and len(fit["terms"]["diff_weights"]) == 14
    report = json.loads((finished_run / "results/eval/metrics.json").read_text())
    assert report["calibration"]["tie_share_after"] == pytest.approx(fit["tie_share_after"])
    assert 0 <= report["test"]["tie_share_predicted"] <= 1 and report["test"]["tie_share_true"] == 0.36
    # The served model carries the fit: the command line alone writes the workflow's submission.
    packaged = json.loads((finished_run / "results/model/inference.json").read_text())["calibration"]
    assert {key: packaged[key] for key in ("method", "ab_scale", "tie_scale", "tie_bias")} == {
        key: fit[key] for key in ("method", "ab_scale", "tie_scale", "tie_bias")
    }
    assert "compared" not in packaged and packaged["terms"] == fit["terms"]
    assert "calibration" not in json.loads((finished_run / "results/student/quantized/inference.json").read_text())
    out = tmp_path / "cli.csv"
    predict_cli("results/model", "data/sample/test.csv", str(out), cwd=finished_run)
    cli, submission = pd.read_csv(out).sort_values("id"), pd.read_csv(finished_run / "results/submission.csv").sort_values("id")
    assert (cli.iloc[:, 1:].to_numpy() - submission.iloc[:, 1:].to_numpy()).__abs__().max() < 1e-6


def test_a_new_temperature_reruns_only_the_student_side(finished_run, tmp_path):
    overlay = tmp_path / "t.yaml"
    overlay.write_text("distill: {temperature: 2.0}\n")
    result = snakemake(finished_run, "-n", "--configfile", "small.yaml", str(overlay))
    assert job_counts(result.stdout) == {**STUDENT_SIDE, "all": 1}


def test_forcing_one_student_fold_replans_it_and_its_dependants(finished_run):
    result = snakemake(finished_run, "-n", "--forcerun", "results/student/fold1/adapter", "--configfile", "small.yaml")
    # On the holdout: that fold, the merged and the exported model; the other folds keep their scores.
    assert job_counts(result.stdout) == {**STUDENT_SIDE, "distill_student": 1, "score_holdout": 3, "all": 1}


def test_bad_input_fails_with_a_named_error_and_no_output(tmp_path, arena_train_csv):
    workdir = copy_workflow(tmp_path)
    frame = pd.read_csv(arena_train_csv, dtype=str, keep_default_na=False)
    frame.loc[3, "winner_tie"] = "1"  # row 3 now has two winners
    frame.to_csv(workdir / "bad_train.csv", index=False)
    (workdir / "bad.yaml").write_text("data: {train: bad_train.csv}\n")
    result = snakemake(workdir, "results/data/train.parquet", "--cores", "1", "--configfile", "bad.yaml", check=False)
    assert result.returncode != 0
    log = (workdir / "results/logs/prepare_data/train.log").read_text()
    row_id = frame.loc[3, "id"]
    assert "LabelError: labels [" in log and f"file bad_train.csv, row id {row_id}" in log
    assert not (workdir / "results/data/train.parquet").exists()
    assert not list((workdir / "results/data").glob(".*"))  # no staged temp file left


def test_a_killed_teacher_job_resumes_from_its_checkpoint(finished_run, tmp_path):
    """Kill Snakemake and its job once a checkpoint exists; the rerun continues from it and ends
    with the adapter an uninterrupted run writes, bit for bit, at the presets' LoRA dropout
    (0.05: random numbers every step, so the random state must come back too)."""
    straight = copy_of_run(finished_run, tmp_path / "straight")
    finished_run = copy_of_run(finished_run, tmp_path / "run")
    overlay = tmp_path / "often.yaml"
    overlay.write_text("teachers: {llama: {lora: {dropout: 0.05}, training: {eval_every: 3}}}\n")
    target = "results/teachers/llama/fold0/metrics.json"
    args = [
        str(Path(sys.executable).parent / "snakemake"),
        target,
        "--profile",
        "profiles/local",
        "--cores",
        "1",
        "--configfile",
        "small.yaml",
        str(overlay),
    ]
    state = finished_run / "results/checkpoints/train_teacher/llama/fold0/latest/state.json"
    job = subprocess.Popen(args, cwd=finished_run, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600
    while not state.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    assert state.exists(), "no checkpoint appeared before the job ended"
    step = json.loads(state.read_text())["step"]
    snakemake(finished_run, *args[1:], "--unlock")  # the killed run left its lock behind
    snakemake(finished_run, *args[1:])
    log = (finished_run / "results/logs/train_teacher/llama/fold0.log").read_text()
    assert f"resumed from step {step}" in log
    metrics = json.loads((finished_run / target).read_text())
    assert metrics["resumed_from"] == [step] and metrics["steps"] > step
    assert not state.parent.exists()  # checkpoints go once the job succeeds
    snakemake(straight, *args[1:])
    uninterrupted = json.loads((straight / target).read_text())
    assert uninterrupted["resumed_from"] == [] and uninterrupted["history"] == metrics["history"]
    adapter = "results/teachers/llama/fold0/adapter/adapter_model.safetensors"
    resumed_weights, straight_weights = load_file(finished_run / adapter), load_file(straight / adapter)
    assert resumed_weights.keys() == straight_weights.keys()
    assert all(torch.equal(resumed_weights[name], straight_weights[name]) for name in resumed_weights)


def test_a_budget_run_trains_scores_and_distils_subsets(finished_run, tmp_path):
    """The seed team's budget settings: a teacher trained on a subset of the fold for a fixed
    number of steps, every teacher scoring the same subset of pairs, the student distilled on
    exactly those pairs (in both orders)."""
    run = copy_of_run(finished_run, tmp_path / "run")
    overlay = tmp_path / "budget.yaml"
    overlay.write_text("teachers: {llama: {train_rows: 60, max_steps: 5}}\nteacher_logits: {max_rows: 40}\n")
    target = "results/student/fold0/metrics.json"
    snakemake(run, target, "--profile", "profiles/local", "--cores", "2", "--configfile", "small.yaml", str(overlay))
    teacher = json.loads((run / "results/teachers/llama/fold0/metrics.json").read_text())
    assert teacher["steps"] == 5 and teacher["train_rows"] == 2 * 60
    scored = {name: pd.read_parquet(run / f"results/teachers/{name}/fold0/logits.parquet", columns=["id", "swapped"]) for name in TEACHERS}
    pairs = [set(map(tuple, frame.to_numpy().tolist())) for frame in scored.values()]
    assert all(len(rows) == 2 * 40 for rows in pairs) and all(rows == pairs[0] for rows in pairs)
    assert json.loads((run / target).read_text())["train_rows"] == 2 * 40


def test_the_command_line_applies_a_calibration_as_the_workflow_does(finished_run, tmp_path):
    """The fit compared in the run, given to the command line: its test probabilities are the
    ones the submission's scoring wrote for it (the served one is the submission itself)."""
    compared = json.loads((finished_run / "results/calibration/calibration.json").read_text())["compared"]["symmetric"]
    (tmp_path / "symmetric.json").write_text(json.dumps(compared))
    out = tmp_path / "cli.csv"
    predict_cli("results/model", "data/sample/test.csv", str(out), "--calibration", str(tmp_path / "symmetric.json"), cwd=finished_run)
    cli = pd.read_csv(out).set_index("id")
    scored = pd.read_parquet(finished_run / "results/eval/holdout/submission.parquet")
    scored = scored[scored["rows"] == "test"].set_index("id")
    assert len(scored) == 100
    assert (
        abs(
            cli.loc[scored.index].to_numpy() - scored[["compared_symmetric_a", "compared_symmetric_b", "compared_symmetric_tie"]].to_numpy()
        ).max()
        < 1e-6
    )
    assert abs(cli.loc[scored.index].to_numpy() - scored[["calibrated_a", "calibrated_b", "calibrated_tie"]].to_numpy()).max() > 1e-3
