"""The training core: it learns, it resumes exactly, it runs data-parallel, it augments by swapping."""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from arena_distill.data.pairs import swap_pairs, with_swaps
from arena_distill.modeling.parallel import Parallel
from arena_distill.training.checkpoints import trainable_state
from arena_distill.training.config import TrainConfig
from arena_distill.training.loop import learning_curve, train
from arena_distill.training.tasks import ClassificationTask, classifier_metrics, score
from tests.unit.synthetic import PAD, Stop, marker_pairs, stop_at, tiny_classifier

CONFIG = TrainConfig(learning_rate=3e-3, epochs=3, batch_size=16, micro_batch_size=16, eval_every=20, seed=0)


def run(tmp_path: Path, config: TrainConfig = CONFIG, rows: int = 1600, dropout: float = 0.0, **kwargs):
    model = tiny_classifier(seed=0, dropout=dropout)
    result = train(
        model,
        ClassificationTask(),
        marker_pairs(rows, seed=1),
        marker_pairs(120, seed=2),
        config,
        pad_id=PAD,
        checkpoint_dir=tmp_path / "ckpt",
        fingerprint="test",
        **kwargs,
    )
    return model, result


class Records(logging.Handler):
    """The log records of one logger, kept for a test to read."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def marker_curves(tmp_path_factory) -> Path:
    """Where the marker run writes its TensorBoard curves."""
    return tmp_path_factory.mktemp("curves") / "run"


@pytest.fixture(scope="module")
def marker_run(tmp_path_factory, marker_curves):
    """One run on the marker task, read by several tests: the model it leaves, its result,
    and the training module's log lines."""
    logger, records = logging.getLogger("arena_distill.training.loop"), Records()
    level = logger.level
    logger.addHandler(records)
    logger.setLevel(logging.INFO)
    try:
        model, result = run(tmp_path_factory.mktemp("marker"), curves_dir=marker_curves)
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
    return model, result, records.messages


def scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> (step, value) of every TensorBoard scalar under `logdir`, as TensorBoard reads them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir))
    events.Reload()
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_training_learns_the_marker(marker_run):
    val = marker_pairs(120, seed=2)
    untrained = classifier_metrics(
        score(tiny_classifier(seed=0), val, PAD, torch.device("cpu"), Parallel(), 4096, False), val.targets["label"]
    )
    model, result, _ = marker_run
    metrics = result.metrics
    assert metrics["val_accuracy"] > 0.9, metrics
    assert untrained["accuracy"] < 0.5
    assert metrics["val_loss"] < 0.3 < untrained["loss"]
    assert metrics["train_loss_last"] < metrics["train_loss_first"] / 3
    # The weights left in the model are the best checkpoint's: re-evaluating gives its loss,
    # and the logits the run hands back are theirs (the stage writes them, never rescoring).
    again = score(model, val, PAD, torch.device("cpu"), Parallel(), 4096, False)
    assert classifier_metrics(again, val.targets["label"])["loss"] == pytest.approx(metrics["val_loss"], rel=1e-6)
    np.testing.assert_allclose(result.val_logits, again, atol=1e-5)


def test_the_run_logs_its_pace_and_keeps_a_learning_curve(marker_run):
    """A line every tenth of the run (loss, rate, ETA) that `tail -f` shows, and the same
    points in the metrics for the report's learning curves; the curve falls as it learns."""
    _, result, messages = marker_run
    lines = [message for message in messages if " eta " in message]
    assert len(lines) == 10 and lines[0].startswith("step 30/300 (10 %) train_loss ") and "tok/s" in lines[0]
    assert lines[-1].startswith("step 300/300 (100 %)") and lines[-1].endswith("eta 0:00:00")
    curve = result.metrics["train_curve"]
    assert [point["step"] for point in curve] == list(range(30, 301, 30))
    assert curve[-1]["train_loss"] < curve[0]["train_loss"] / 3


def test_the_run_writes_live_tensorboard_curves(marker_run, marker_curves):
    """Every `log_every` steps (a tenth of the run here) the training loss, learning rate and
    tokens/s, and every validation's metrics: the values the run records, read by TensorBoard."""
    _, result, _ = marker_run
    curves = scalars(marker_curves)
    train_curve = [(point["step"], point["train_loss"]) for point in result.metrics["train_curve"]]
    assert [step for step, _ in curves["train/loss"]] == [step for step, _ in train_curve] == list(range(30, 301, 30))
    np.testing.assert_allclose([value for _, value in curves["train/loss"]], [value for _, value in train_curve], rtol=1e-6)
    history = result.metrics["history"]
    assert curves["val/loss"] == [(h["step"], pytest.approx(h["val_loss"], rel=1e-6)) for h in history]
    assert curves["val/accuracy"] == [(h["step"], pytest.approx(h["val_accuracy"], rel=1e-6)) for h in history]
    rates = [value for _, value in curves["train/learning_rate"]]
    assert rates[0] > rates[-1] >= 0 and len(curves["train/tokens_per_second"]) == 10


def test_learning_curve_windows():
    assert learning_curve([4.0, 2.0, 3.0, 1.0, 0.0], 2) == [
        {"step": 2, "train_loss": 3.0},
        {"step": 4, "train_loss": 2.0},
        {"step": 5, "train_loss": 0.5},
    ]
    assert learning_curve([], 3) == []


def test_labels_detached_from_the_rows_are_not_learned(tmp_path):
    """Labels shuffled away from their rows (a misaligned-label bug) leave nothing to learn."""
    model = tiny_classifier(seed=0)
    shuffled = marker_pairs(1600, seed=1)
    shuffled.targets["label"] = np.random.default_rng(0).permutation(shuffled.targets["label"])
    result = train(
        model,
        ClassificationTask(),
        shuffled,
        marker_pairs(120, seed=2),
        CONFIG,
        pad_id=PAD,
        checkpoint_dir=tmp_path / "ckpt",
        fingerprint="test",
    )
    assert result.metrics["val_accuracy"] < 0.6


def test_frozen_weights_do_not_learn(tmp_path):
    model = tiny_classifier(seed=0)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    model.base_model.model.score.modules_to_save.default.weight.requires_grad_(True)
    result = train(
        model,
        ClassificationTask(),
        marker_pairs(1600, seed=1),
        marker_pairs(120, seed=2),
        CONFIG,
        pad_id=PAD,
        checkpoint_dir=tmp_path / "ckpt",
        fingerprint="test",
    )
    assert result.metrics["val_accuracy"] < 0.7


def test_resume_after_interruption_is_bitwise_identical(tmp_path):
    """Stopped at step 20 of 40 (a checkpoint every 10), the run resumes to the straight run's weights."""
    config = TrainConfig(learning_rate=3e-3, epochs=1, batch_size=16, micro_batch_size=8, eval_every=10, seed=0)
    straight, straight_result = run(tmp_path / "straight", config, rows=640)
    with pytest.raises(Stop):
        run(tmp_path / "resumed", config, rows=640, on_checkpoint=stop_at(20), curves_dir=tmp_path / "curves")
    resumed, resumed_result = run(tmp_path / "resumed", config, rows=640, curves_dir=tmp_path / "curves")
    # The curves of the stopped attempt are continued, not restarted.
    assert [step for step, _ in scalars(tmp_path / "curves")["val/loss"]] == [10, 20, 30, 40]
    assert straight_result.metrics["steps"] == 40
    assert resumed_result.state.resumed_from == [20]
    a, b = trainable_state(straight), trainable_state(resumed)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert resumed_result.metrics["history"] == straight_result.metrics["history"]


PRESET_LIKE = TrainConfig(
    learning_rate=3e-3,
    epochs=2,
    batch_size=16,
    micro_batch_size=8,
    eval_every=10,
    warmup_steps=5,
    adam_betas=(0.9, 0.95),
    batching="random",
    seed=0,
)
"""The presets' optimizer settings (betas, warmup steps, shuffled batches) at a tiny scale."""


@pytest.mark.parametrize("stop", [10, 20])  # mid-epoch, and at the epoch boundary
def test_a_requeued_run_at_the_presets_dropout_resumes_bitwise(tmp_path, stop):
    """LoRA dropout 0.05 draws random numbers every step, so a resume that skips any part of the
    state (weights, optimizer, schedule, random state, batch order) ends with other weights."""
    straight, straight_result = run(tmp_path / "straight", PRESET_LIKE, rows=320, dropout=0.05)
    with pytest.raises(Stop):
        run(tmp_path / "resumed", PRESET_LIKE, rows=320, dropout=0.05, on_checkpoint=stop_at(stop))
    resumed, resumed_result = run(tmp_path / "resumed", PRESET_LIKE, rows=320, dropout=0.05)
    assert resumed_result.state.resumed_from == [stop] and straight_result.metrics["steps"] == 40
    a, b = trainable_state(straight), trainable_state(resumed)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert resumed_result.state.losses == straight_result.state.losses
    assert resumed_result.metrics["history"] == straight_result.metrics["history"]


class RunsCode:
    """A pickle that creates a file when it is loaded: what a tampered checkpoint could hold."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_tampered_checkpoint_is_never_unpickled(tmp_path):
    config = TrainConfig(learning_rate=3e-3, epochs=1, batch_size=16, micro_batch_size=16, eval_every=10, seed=0)
    with pytest.raises(Stop):
        run(tmp_path, config, on_checkpoint=stop_at(10))
    latest = next((tmp_path / "ckpt").rglob("optim.pt")).parent
    marker = tmp_path / "code-ran"
    torch.save({"optimizer": RunsCode(marker)}, latest / "optim.pt")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        run(tmp_path, config)
    assert not marker.exists()


def test_a_checkpoint_of_another_run_is_not_resumed(tmp_path):
    config = TrainConfig(learning_rate=3e-3, epochs=1, batch_size=16, micro_batch_size=16, eval_every=10, seed=0)
    with pytest.raises(Stop):
        run(tmp_path, config, on_checkpoint=stop_at(10))
    model = tiny_classifier(seed=0)
    result = train(
        model,
        ClassificationTask(),
        marker_pairs(1600, seed=1),
        marker_pairs(120, seed=2),
        config,
        pad_id=PAD,
        checkpoint_dir=tmp_path / "ckpt",
        fingerprint="other data",
    )
    assert result.state.resumed_from == []


def test_two_processes_give_the_one_process_adapter(tmp_path):
    """torchrun with 2 CPU processes (gloo), same global batch of 16 -> same weights."""
    single = tmp_path / "single.safetensors"
    double = tmp_path / "double.safetensors"
    worker = Path(__file__).with_name("ddp_worker.py")
    repo = Path(__file__).resolve().parents[2]
    env = {"PYTHONPATH": f"{repo}:{repo / 'src'}", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, str(worker), str(single), str(tmp_path / "c1")], check=True, env=env, timeout=600)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(worker),
            str(double),
            str(tmp_path / "c2"),
        ],
        check=True,
        env=env,
        timeout=600,
    )
    a, b = load_file(single), load_file(double)
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-5, worst
    assert any((a[k] - tiny_classifier(seed=0).state_dict().get(k, a[k])).abs().max() > 1e-3 for k in a)


def test_swap_exchanges_responses_and_a_b_labels():
    rows = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "prompt": [["p"]] * 3,
            "response_a": [["a1"], ["a2"], ["a3"]],
            "response_b": [["b1"], ["b2"], ["b3"]],
            "label": [0, 1, 2],
        }
    )
    swapped = swap_pairs(rows)
    assert swapped["response_a"].tolist() == rows["response_b"].tolist()
    assert swapped["response_b"].tolist() == rows["response_a"].tolist()
    assert swapped["label"].tolist() == [1, 0, 2]
    both = with_swaps(rows)
    assert len(both) == 6 and both["swapped"].tolist() == [False] * 3 + [True] * 3
    assert with_swaps(swapped.drop(columns="swapped"))["label"].tolist()[3:] == [0, 1, 2]


def test_schedule_longer_than_the_run_stops_mid_cosine():
    """The original's teachers: 1 epoch of a 2-epoch schedule, 100 warmup steps."""
    config = TrainConfig(learning_rate=1e-5, epochs=1, schedule_epochs=2, warmup_steps=100)
    assert config.schedule(steps_per_epoch=400) == (400, 800, 100)
    assert TrainConfig(learning_rate=1e-5, epochs=2, warmup_ratio=0.05).schedule(400) == (800, 800, 40)


def test_max_steps_replace_the_epochs_and_end_the_schedule():
    """The seed team's teachers: 300 steps, whatever an epoch is; the cosine ends with them
    unless a longer schedule is asked for."""
    assert TrainConfig(learning_rate=1e-5, epochs=1, max_steps=300, warmup_steps=10).schedule(steps_per_epoch=1250) == (300, 300, 10)
    assert TrainConfig(learning_rate=1e-5, max_steps=300, schedule_epochs=1, warmup_steps=10).schedule(1250) == (300, 1250, 10)


def test_select_last_keeps_the_last_step_not_the_best(tmp_path):
    """With a schedule cut mid-way and `select: last`, the model ends with the last step's weights."""
    config = TrainConfig(
        learning_rate=3e-3,
        epochs=1,
        schedule_epochs=2,
        select="last",
        batch_size=16,
        micro_batch_size=16,
        eval_every=10,
        seed=0,
        adam_betas=(0.9, 0.95),
        warmup_steps=5,
    )
    model, result = run(tmp_path, config)
    metrics = result.metrics
    assert metrics["select"] == "last" and metrics["kept_step"] == metrics["steps"] == 100
    val = marker_pairs(120, seed=2)
    again = score(model, val, PAD, torch.device("cpu"), Parallel(), 4096, False)
    last = metrics["history"][-1]
    assert classifier_metrics(again, val.targets["label"])["loss"] == pytest.approx(last["val_loss"], rel=1e-6)
    assert metrics["val_loss"] == last["val_loss"]
    np.testing.assert_allclose(result.val_logits, again, atol=1e-5)
    assert not (tmp_path / "ckpt" / "best.safetensors").exists()


def test_random_batching_covers_every_row_once_per_epoch():
    from arena_distill.modeling.batching import random_batches

    batches = random_batches([5] * 50, batch_size=8, seed=0, epoch=1)
    assert sorted(i for batch in batches for i in batch) == list(range(50))
    assert batches == random_batches([5] * 50, batch_size=8, seed=0, epoch=1) != random_batches([5] * 50, 8, 0, 2)
    config = TrainConfig(learning_rate=3e-3, epochs=1, batch_size=16, micro_batch_size=16, eval_every=100, seed=0, batching="random")
    assert config.batching == "random"
