"""The run's topology and each job's inputs as functions of the config (`arena_distill.workflow`:
plan, inputs, paths), on the embedded default and the preset, without Snakemake running."""

import copy

import pytest

from arena_distill.errors import ConfigError
from arena_distill.workflow import inputs, paths
from arena_distill.workflow.config import PRESET, effective_config
from arena_distill.workflow.config_checks import check_topology
from arena_distill.workflow.plan import RunPlan


@pytest.fixture(scope="module")
def default() -> dict:
    return effective_config()


@pytest.fixture(scope="module")
def preset() -> dict:
    return effective_config([PRESET])


def changed(config: dict, **sections) -> RunPlan:
    """A plan of `config` with some sections' keys replaced (a deep copy: the fixture stays)."""
    config = copy.deepcopy(config)
    for section, values in sections.items():
        config[section].update(values)
    return RunPlan(config)


def test_the_default_trains_two_tiny_teachers_on_two_folds(default):
    plan = RunPlan(default)
    assert plan.teachers() == ["llama", "qwen"] and plan.used_models() == ["llama", "qwen", "student"]
    assert plan.folds() == [0, 1] and plan.shards() == [0]
    assert plan.source_path("llama") == "results/models/llama/base"  # a tiny model is built by init_model
    assert plan.base_of("llama") == {"path": "results/models/llama/base", "init_adapter": "results/models/llama/post_pretrain/adapter"}
    assert plan.base_of("student", fresh=True)["init_adapter"] is None
    assert plan.student_runs() == ["student"]


def test_the_preset_starts_hub_models_from_their_post_pretrained_adapters(preset):
    plan = RunPlan(preset)
    assert plan.folds() == list(range(5)) and plan.shards() == list(range(8))
    base = plan.base_of("student")
    assert not base["path"].startswith("results/") and base["init_adapter"] == "results/models/student/post_pretrain/adapter"
    assert inputs.named("base", base) == {"base_init_adapter": "results/models/student/post_pretrain/adapter"}  # the hub id is no input
    assert plan.logit_shards("llama", 3)[-1] == "results/teachers/llama/fold3/logits/shard7.parquet"


def test_in_sample_logits_come_from_the_folds_own_teacher_out_of_fold_from_every_fold(default):
    in_sample = RunPlan(default).teacher_logit_tables("1")
    assert in_sample["llama"] == ["results/teachers/llama/fold1/logits.parquet"]
    out_of_fold = changed(default, teacher_logits={"rows": "val"}).teacher_logit_tables("1")
    assert out_of_fold["qwen"] == [f"results/teachers/qwen/fold{fold}/logits.parquet" for fold in (0, 1)]


def test_supplied_teacher_logits_replace_the_trained_teachers(default):
    plan = changed(default, distill={"teacher_logits": {"big": "data/big.parquet"}})
    assert plan.teachers() == [] and plan.teacher_logit_tables("0")["big"] == ["data/big.parquet"]
    assert plan.teacher_calibrations() == {} and plan.model_card_recipe()["teachers"] == {"big": "precomputed logits"}
    assert not [key for key in inputs.evaluate(plan) if key.startswith("teacher_val_logits")]
    assert "results/benchmarks/train_teacher/llama/fold0.tsv" not in plan.benchmarks()


def test_the_fresh_init_comparison_adds_a_student_run_and_its_holdout_scores(default):
    plan = changed(default, post_pretrain={"compare_fresh_init": True})
    assert plan.student_runs() == ["student", "student_fresh_init"]
    assert "results/eval/holdout/student_fresh_init/average.json" in plan.holdout_scorings()
    assert plan.student_base("student_fresh_init")["init_adapter"] is None
    fresh = inputs.score_holdout(plan, "student_fresh_init/fold1")
    assert fresh["adapters"] == ["results/student_fresh_init/fold1/adapter"] and fresh["student_base_path"] == "results/models/student/base"
    assert "student_base_init_adapter" not in fresh  # a fresh LoRA starts from no adapter


def test_the_submission_calibration_reads_what_the_config_names(default):
    on_votes = RunPlan(default)
    assert inputs.calibration(on_votes) == {"model": paths.QUANTIZED, "rows": "results/data/calibration.parquet"}
    assert inputs.package(on_votes) == {"model": paths.QUANTIZED, "calibration": paths.CALIBRATION_FIT}
    oof = changed(default, predict={"calibrate_on": "oof", "calibration": "symmetric"})
    assert inputs.calibration(oof) == {"oof": ["results/student/fold0/val_logits.parquet", "results/student/fold1/val_logits.parquet"]}
    assert inputs.package(changed(default, predict={"calibration": "none"})) == {"model": paths.QUANTIZED}


def test_figures_read_every_training_runs_metrics(default):
    plan = RunPlan(default)
    runs = plan.training_runs()
    assert runs["teachers"]["llama post-pretraining"] == "results/models/llama/post_pretrain/metrics.json"
    assert runs["student"]["student fold 1"] == "results/student/fold1/metrics.json"
    assert set(inputs.figures(plan)["training_metrics"]) == {path for panel in runs.values() for path in panel.values()}
    assert plan.final_outputs()[:2] == [paths.SUBMISSION, paths.MODEL] and len(plan.figures()) == len(paths.FIGURE_NAMES)


def test_job_files_are_spelled_by_one_function_each():
    assert paths.log("teacher_logits", "llama", "fold0", "shard3") == "results/logs/teacher_logits/llama/fold0/shard3.log"
    assert paths.benchmark("merge_student") == "results/benchmarks/merge_student.tsv"
    assert paths.checkpoint_dir("distill_student", "student", "fold1") == "results/checkpoints/distill_student/student/fold1"
    assert paths.heuristic_file("model.json", 0) == "results/heuristic/fold0/model.json"
    assert paths.heuristic_file("val_logits", 0) == "results/heuristic/fold0/val_logits.parquet"


@pytest.mark.parametrize(
    ("sections", "key"),
    [
        ({"post_pretrain": {"models": {"mistral": {}}}}, "post_pretrain.models"),
        ({"post_pretrain": {"data": None}}, "post_pretrain.data"),
        ({"data": {"calibration": None}}, "data.calibration"),
    ],
)
def test_a_switch_naming_what_the_run_lacks_is_a_config_error(default, sections, key):
    with pytest.raises(ConfigError) as error:
        check_topology(changed(default, **sections).config)
    assert error.value.key == key


def test_a_built_file_reaches_a_script_through_the_jobs_inputs(default):
    """A params function reads a built part of a base from the job's `input` (where a storage
    plugin puts its copy); a given part (a hub id) stays as configured."""
    base = {"path": "google/gemma-2-9b", "init_adapter": "results/models/student/post_pretrain/adapter"}
    assert inputs.named("base", base) == {"base_init_adapter": base["init_adapter"]}
    job_input = {"base_init_adapter": "/local/copy/adapter"}
    assert inputs.as_seen("base", base, job_input) == {"path": "google/gemma-2-9b", "init_adapter": "/local/copy/adapter"}
    plan = RunPlan(default)
    distill = inputs.distill(plan, "student", "0")
    assert inputs.teacher_logits_seen(plan, "0", distill) == plan.teacher_logit_tables("0")
    assert inputs.calibrations_seen(plan, distill) == plan.teacher_calibrations()
    metrics = inputs.figures(plan)["training_metrics"]
    assert inputs.training_runs_seen(plan, metrics) == plan.training_runs()
