"""Start-up checks of what the schema cannot see, when Snakemake reads the config instead
of hours into a run: configured input files that do not exist, and values each valid alone
that the models cannot use.

Only the standard library: the process that plans the DAG need not import torch. A model's
dimensions come from its `tiny` sizes, the `config.json` of a local directory, or the
bundled config of a preset hub id; a model none of these describes is not checked here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arena_distill.errors import ConfigError
from arena_distill.modeling.model_lock import is_hub_id
from arena_distill.workflow.plan import RunPlan

DEFAULT_TINY_POSITIONS = 2048
"""`max_position_embeddings` of a tiny model whose sizes leave it out (the transformers default)."""
TINY_SOFTCAP = {"gemma2": 50.0}
"""The attention-logit soft-cap of the tiny architectures that have one (transformers' Gemma-2 default)."""


@dataclass(frozen=True)
class Dims:
    """What the checks need of an architecture."""

    hidden: int
    intermediate: int
    attention: int
    """Width of the attention output (heads × head_dim), the input of `o_proj`."""
    positions: int
    softcap: float | None = None
    """`attn_logit_softcapping`: scores pass through cap·tanh(score/cap), which SDPA cannot compute."""
    attention_dropout: float = 0.0


def model_dims(spec: Mapping[str, Any], workflow_dir: Path) -> Dims | None:
    """The dimensions of the model `spec` names, or None when no config describes it."""
    raw = spec["model"]
    if raw.startswith("tiny:"):
        sizes = spec.get("tiny", {})
        hidden = sizes["hidden_size"]
        return Dims(
            hidden,
            sizes["intermediate_size"],
            hidden,
            sizes.get("max_position_embeddings", DEFAULT_TINY_POSITIONS),
            TINY_SOFTCAP.get(raw.removeprefix("tiny:")),
        )
    for source in (workflow_dir / raw / "config.json", workflow_dir / "config" / "model_configs" / f"{raw.replace('/', '--')}.json"):
        if source.is_file():
            config = json.loads(source.read_text())
            config = config.get("text_config", config)
            heads, hidden = config["num_attention_heads"], config["hidden_size"]
            return Dims(
                hidden,
                config["intermediate_size"],
                heads * config.get("head_dim", hidden // heads),
                config.get("max_position_embeddings", 0) or 0,
                config.get("attn_logit_softcapping"),
                config.get("attention_dropout", 0.0) or 0.0,
            )
    return None


def check_group_size(config: Mapping[str, Any], student: Dims | None) -> None:
    """GPTQ quantizes each linear layer's inputs in groups: the group must divide every input width."""
    quantize = config.get("quantize", {})
    if quantize.get("method", "gptq") != "gptq" or student is None:
        return
    group = quantize.get("group_size", 128)
    widths = {"hidden_size": student.hidden, "intermediate_size": student.intermediate, "heads × head_dim": student.attention}
    bad = {name: width for name, width in widths.items() if width % group}
    if bad:
        raise ConfigError(
            f"GPTQ group size {group} does not divide the student's {', '.join(f'{k} {v}' for k, v in bad.items())}",
            key="quantize.group_size",
        )


def check_lengths(config: Mapping[str, Any], models: Mapping[str, Dims | None]) -> None:
    """Token budgets within the positions of every model that reads them."""
    text = config["text"]
    budgets = [("text.train_max_length", text["train_max_length"], list(models))]
    test_lengths = config.get("predict", {}).get("max_lengths") or [text["test_max_length"]]
    key = "predict.max_lengths" if config.get("predict", {}).get("max_lengths") else "text.test_max_length"
    budgets.append((key, max(test_lengths), ["student"]))
    for key, length, readers in budgets:
        for name in readers:
            dims = models.get(name)
            if dims is not None and dims.positions and length > dims.positions:
                raise ConfigError(f"{length} tokens exceed the {dims.positions} positions of model {name!r}", key=key)


def exact_attention(dims: Dims | None) -> str:
    """The attention a model runs with when its config names none: eager where it soft-caps
    (exact, unlike SDPA), SDPA otherwise (`arena_distill.modeling.models.config_attention`)."""
    return "eager" if dims is not None and dims.softcap else "sdpa"


def check_attention_path(attention: str, dims: Dims | None, key: str) -> None:
    """An attention path that computes the model's attention: SDPA drops a soft-cap silently on
    transformers releases that allow it; FlexAttention has no attention dropout."""
    if dims is None:
        return
    if attention == "sdpa" and dims.softcap:
        raise ConfigError(
            f"sdpa cannot soft-cap attention logits (this model caps them at {dims.softcap:g}); "
            "use flex_attention (exact and fast) or eager",
            key=key,
        )
    if attention == "flex_attention" and dims.attention_dropout:
        raise ConfigError(
            f"flex_attention has no attention dropout (this model's is {dims.attention_dropout:g}); use eager or sdpa", key=key
        )


def check_attention(config: Mapping[str, Any], models: Mapping[str, Dims | None]) -> None:
    """Each model's attention path for training and scoring, and the student's at prediction.
    (Every path the schema admits keeps packed rows apart, so packing adds no condition here.)"""
    for name, spec in config.get("teachers", {}).items():
        check_attention_path(
            spec.get("attn_implementation") or exact_attention(models[name]), models[name], f"teachers.{name}.attn_implementation"
        )
    student = models["student"]
    check_attention_path(config["student"].get("attn_implementation") or exact_attention(student), student, "student.attn_implementation")
    predict = config.get("predict", {}).get("attn_implementation")
    if predict:
        check_attention_path(predict, student, "predict.attn_implementation")


def data_files(config: Mapping[str, Any]) -> dict[str, str]:
    """Config key -> path of every input file the config names."""
    data = config["data"]
    files = {
        "data.train": data["train"],
        "data.test": data["test"],
        "data.test_labels": data.get("test_labels"),
        "data.calibration": data.get("calibration"),
        "post_pretrain.data": config.get("post_pretrain", {}).get("data"),
        **{f"data.extra.{name}": path for name, path in data.get("extra", {}).items()},
    }
    return {key: path for key, path in files.items() if path}


def check_data_files(config: Mapping[str, Any]) -> None:
    """Every configured input file exists (relative to the working directory). A rule whose
    output exists does not look at its inputs, so a mistyped path would otherwise let the
    next rules run on the previous file's table."""
    for key, path in data_files(config).items():
        if not Path(path).is_file():
            raise ConfigError(f"no such file: {path}", key=key)


def model_keys(config: Mapping[str, Any]) -> dict[str, str]:
    """Config key -> model spec of every model."""
    keys = {f"teachers.{name}.model": spec["model"] for name, spec in config.get("teachers", {}).items()}
    return {**keys, "student.model": config["student"]["model"]}


def check_model_sources(config: Mapping[str, Any]) -> None:
    """A model given as a local path is a directory that exists: from_pretrained would take a
    missing one for a hub id. (A hub id is loaded from the Hugging Face cache, offline unless
    HF_HUB_OFFLINE=0.)"""
    for key, spec in model_keys(config).items():
        if spec.startswith("tiny:") or Path(spec).is_dir():
            continue
        if not is_hub_id(spec):
            raise ConfigError(f"no model directory {spec} (a hub model is given as owner/name)", key=key)


def check_models(config: Mapping[str, Any], workflow_dir: str | Path) -> None:
    """The checks against the models' dimensions."""
    specs = {**config.get("teachers", {}), "student": config["student"]}
    models = {name: model_dims(spec, Path(workflow_dir)) for name, spec in specs.items()}
    check_group_size(config, models["student"])
    check_lengths(config, models)
    check_attention(config, models)


def check_postprocessing(config: Mapping[str, Any]) -> None:
    """Shrink is fitted on the students' uncalibrated out-of-fold predictions: it is an
    alternative to a calibration, not a step after one (whose outputs it was not fitted on).
    The features calibration reads the answers' texts, which the out-of-fold logits lack."""
    predict = config.get("predict", {})
    if predict.get("shrink") and predict.get("calibration", "none") != "none":
        raise ConfigError(
            f"shrink replaces the calibration; set predict.calibration: none (it is {predict['calibration']!r})", key="predict.shrink"
        )
    if predict.get("calibration") == "features" and predict.get("calibrate_on", "oof") != "calibration_data":
        raise ConfigError(
            "the features calibration is fitted on labelled rows with their texts; set "
            "predict.calibrate_on: calibration_data (and data.calibration)",
            key="predict.calibrate_on",
        )


def check_topology(config: Mapping[str, Any]) -> None:
    """Switches that name what the run lacks: post-pretraining overrides for models it does not
    have, post-pretraining without its data, a calibration fitted on rows the config does not give."""
    plan = RunPlan(config)
    unknown = set(config["post_pretrain"].get("models", {})) - set(plan.models())
    if unknown:
        raise ConfigError(f"post_pretrain.models names {sorted(unknown)}, which are not models of this config", key="post_pretrain.models")
    if any(map(plan.post_pretraining, plan.used_models())) and not config["post_pretrain"].get("data"):
        raise ConfigError(
            "post-pretraining needs labelled pairs: set post_pretrain.data or post_pretrain.enabled: false", key="post_pretrain.data"
        )
    if plan.calibrating() and config["predict"]["calibrate_on"] == "calibration_data" and not config["data"].get("calibration"):
        raise ConfigError(
            "predict.calibrate_on: calibration_data needs labelled rows: set data.calibration, calibrate_on: oof or "
            "predict.calibration: none",
            key="data.calibration",
        )


def check_config(config: Mapping[str, Any], workflow_dir: str | Path) -> None:
    """Every start-up check; raises ConfigError naming the key."""
    check_postprocessing(config)
    check_data_files(config)
    check_model_sources(config)
    check_models(config, workflow_dir)
    check_topology(config)
