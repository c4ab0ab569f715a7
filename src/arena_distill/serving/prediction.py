"""Predicting P(A wins), P(B wins), P(tie) for pairs with a saved classifier.

Test-time augmentation is the original's: each pair is scored as given and with A and B
exchanged; the mirror's probabilities are mapped back (A↔B) and the two are averaged, which
cancels whatever position bias the model kept. Several max lengths may be averaged the
same way. An optional post-hoc calibration (`calibration.PairScaling`, fitted by the
`calibrate_submission` rule) maps each scoring's logits before the softmax.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.special import softmax
from transformers import AutoConfig, AutoModelForSequenceClassification, GPTQConfig, PreTrainedModel

from arena_distill import INFERENCE_FILE
from arena_distill.baselines.heuristic_model import pair_features
from arena_distill.data.pairs import encode_rows, swap_pairs
from arena_distill.data.text import PairEncoder, TextConfig
from arena_distill.errors import ConfigError, NumericalError
from arena_distill.export.ensemble import members
from arena_distill.io import named_load, read_parquet
from arena_distill.modeling.inference import predict_logits
from arena_distill.modeling.models import attention_implementation, load_tokenizer, resolve_dtype
from arena_distill.scoring.calibration import Features, PairScaling, fit_pair_scaling, views_probs
from arena_distill.scoring.logits import LOGIT_COLUMNS
from arena_distill.scoring.metrics import log_loss, prior_log_loss
from arena_distill.serving.submission import probs_frame

log = logging.getLogger(__name__)


def load_classifier(
    model_dir: str | Path, dtype: str = "auto", gptq_backend: str = "auto", attention: str | None = None, device: str | None = None
) -> tuple[PreTrainedModel, object]:
    """A saved classifier (plain, GPTQ or bitsandbytes) and its tokenizer, ready to score.

    `dtype` (`auto`: bf16 on GPUs that have it, fp16 on a T4, fp32 on CPU) is the precision
    of the unquantized tensors and of the activations. A GPTQ model picks its kernel by
    `gptq_backend`; `auto` lets GPTQModel choose (Machete, then Marlin, then Triton on an
    H100; the first two compile on first use, so a node without nvcc names `gptq_triton`).
    `attention` names the attention path (None: the model's exact one, `models.attention_implementation`).
    `device` is where it runs (None: the first GPU, else the CPU).
    """
    device = device or ("cuda:0" if torch.cuda.is_available() else "cpu")
    tokenizer = load_tokenizer(model_dir)
    with named_load(model_dir):
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir,
            device_map={"": device},
            dtype=resolve_dtype(dtype),
            attn_implementation=attention_implementation(model_dir, attention),
            **gptq_loading(model_dir, gptq_backend_for(gptq_backend, device)),
        )
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer


TURING_BACKEND = "gptq_triton"
"""The GPTQ kernel `auto` means on a GPU older than Ampere (a Kaggle T4, sm_75): Triton ships
with torch and compiles its kernels itself, so it needs no CUDA compiler on the machine (the
Marlin and Machete kernels GPTQModel prefers elsewhere are built with nvcc on first use), and it
runs 8-bit weights with fp16 activations, which is what a T4 has."""


def gptq_backend_for(backend: str, device: str, capability: tuple[int, int] | None = None) -> str:
    """The GPTQ kernel to load with on `device`: `backend` as given, except that `auto` on a
    CUDA device of compute capability below 8.0 is `TURING_BACKEND`. `capability` defaults
    to the device's own."""
    if backend != "auto" or not device.startswith("cuda"):
        return backend
    major, minor = capability or torch.cuda.get_device_capability(torch.device(device))
    return TURING_BACKEND if (major, minor) < (8, 0) else backend


def gptq_loading(model_dir: str | Path, backend: str) -> dict[str, Any]:
    """The `from_pretrained` argument that pins a GPTQ model's kernel (none for `auto`)."""
    saved = getattr(AutoConfig.from_pretrained(model_dir), "quantization_config", None) or {}
    if backend == "auto" or saved.get("quant_method") != "gptq":
        return {}
    from gptqmodel.utils.backend import BACKEND

    if backend not in {choice.value for choice in BACKEND}:
        raise ConfigError(
            f"unknown GPTQ backend {backend!r}; GPTQModel has {sorted(b.value for b in BACKEND if 'gptq' in b.value)}",
            key="predict.gptq_backend",
        )
    return {"quantization_config": GPTQConfig(bits=saved["bits"], backend=backend)}


def check_finite(logits: np.ndarray, ids: Sequence[int], model: PreTrainedModel) -> None:
    """Raise NumericalError naming the first pair whose logits are inf or NaN.

    A model exported or scored in fp16 can overflow (fp16 ends at 65504); its NaN would
    otherwise pass through the softmax into the submission.
    """
    bad = ~np.isfinite(logits).all(axis=1)
    if bad.any():
        raise NumericalError(
            f"{int(bad.sum())} of {len(logits)} pairs got non-finite logits with the model in {model.dtype}; score in bfloat16 "
            f"or float32 (predict.dtype)",
            row=int(ids[int(np.flatnonzero(bad)[0])]),
        )


View = tuple[np.ndarray, bool]
"""One scoring of the rows: (raw logits, mirrored)."""


def score_views(
    model: PreTrainedModel,
    tokenizer,
    rows: pd.DataFrame,
    text: TextConfig,
    *,
    max_lengths: Sequence[int],
    tta: bool = True,
    max_tokens: int = 16384,
) -> list[View]:
    """The raw logits of every scoring the submission averages: each max length, as given
    and, with `tta`, mirrored."""
    views = []
    for max_length in max_lengths:
        encoder = PairEncoder(tokenizer, replace(text, max_length=max_length))
        for swapped in [False, True] if tta else [False]:
            view = swap_pairs(rows) if swapped else rows
            logits = predict_logits(
                model,
                encode_rows(encoder, view),
                pad_id=tokenizer.pad_token_id,
                max_tokens=max_tokens,
                desc="swapped" if swapped else "original",
            )
            check_finite(logits, rows["id"].tolist(), model)
            views.append((logits, swapped))
    return views


def load_scorers(model_dir: str | Path, settings: Mapping[str, Any]) -> list[tuple[PreTrainedModel, object]]:
    """The classifier at `model_dir` and its tokenizer, as `load_classifier` loads them; for a
    fold ensemble (`arena_distill.export.ensemble`) every member's, all held at once."""
    return [
        load_classifier(
            member,
            settings.get("dtype", "auto"),
            settings.get("gptq_backend", "auto"),
            settings.get("attn_implementation"),
            settings.get("device"),
        )
        for member in members(model_dir)
    ]


def scorers_views(
    scorers: Sequence[tuple[PreTrainedModel, object]],
    rows: pd.DataFrame,
    text: Mapping[str, Any],
    settings: Mapping[str, Any],
    tta: bool = True,
) -> list[View]:
    """`score_views` of each scorer at the test settings. Several (a fold ensemble) are
    averaged view by view in probability, as the log of their mean softmax: the result reads
    as one model's logits, so the TTA and a calibration treat the ensemble as one model."""
    per_scorer = [
        score_views(
            model,
            tokenizer,
            rows,
            TextConfig.of(text, settings["max_lengths"][0]),
            max_lengths=settings["max_lengths"],
            tta=tta,
            max_tokens=settings.get("max_tokens", 65536),
        )
        for model, tokenizer in scorers
    ]
    if len(per_scorer) == 1:
        return per_scorer[0]
    return [
        (np.log(np.mean([softmax(views[i][0], axis=1) for views in per_scorer], axis=0)), swapped)
        for i, (_, swapped) in enumerate(per_scorer[0])
    ]


def pair_probs(
    model: PreTrainedModel, tokenizer, rows: pd.DataFrame, text: TextConfig, *, calibration: PairScaling | None = None, **scoring
) -> np.ndarray:
    """Probabilities (rows × [a, b, tie]) of `score_views(**scoring)`: the given order, or with
    TTA its mean with the mirror mapped back, each view after `calibration`."""
    return views_probs(score_views(model, tokenizer, rows, text, **scoring), calibration)


def read_calibration(path: str | Path | None) -> PairScaling | None:
    """The calibration a `calibrate_submission` job wrote (None for no file or method none)."""
    if path is None:
        return None
    saved = json.loads(Path(path).read_text())
    return None if saved["method"] == "none" else PairScaling.from_dict(saved)


def saved_calibration(model_dir: str | Path) -> PairScaling | None:
    """The calibration packaged with a model (`package_model`: `inference.json`), if any."""
    path = Path(model_dir) / INFERENCE_FILE
    saved = json.loads(path.read_text()).get("calibration") if path.is_file() else None
    return PairScaling.from_dict(saved) if saved else None


def predict_table(
    model_dir: str | Path,
    rows: pd.DataFrame,
    text: Mapping[str, Any],
    settings: Mapping[str, Any],
    calibration: PairScaling | None = None,
) -> pd.DataFrame:
    """Submission-schema probabilities of `rows` (prepared pairs) from the model at `model_dir`."""
    if calibration is not None:
        log.info("calibration: %s", calibration.to_dict())
    views = scorers_views(load_scorers(model_dir, settings), rows, text, settings, tta=settings.get("tta", True))
    return probs_frame(rows["id"].tolist(), views_probs(views, calibration, calibration_features(calibration, rows)))


def calibration_features(calibration: PairScaling | None, rows: pd.DataFrame) -> Features | None:
    """The rows' answer features when `calibration` reads them (`features`), else None."""
    return pair_features(rows) if calibration is not None and calibration.uses_features else None


def oof_views(paths: Sequence[str | Path]) -> tuple[list[View], np.ndarray]:
    """The students' out-of-fold logits tables as views (given order, and mirrors when
    every row has one) with the given order's labels."""
    frame = pd.concat([read_parquet(path) for path in paths], ignore_index=True)
    given = frame[~frame["swapped"]].sort_values("id")
    views = [(given[LOGIT_COLUMNS].to_numpy(), False)]
    mirrored = frame[frame["swapped"]].sort_values("id")
    if len(mirrored) == len(given) and (mirrored["id"].to_numpy() == given["id"].to_numpy()).all():
        views.append((mirrored[LOGIT_COLUMNS].to_numpy(), True))
    return views, given["label"].to_numpy()


def calibrate_submission(
    method: str,
    *,
    model_dir: str | Path | None = None,
    rows: pd.DataFrame | None = None,
    text: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    oof_logits: Sequence[str | Path] = (),
) -> dict:
    """Fit the submission's calibration and report it: on labelled `rows` scored by the final
    model at `model_dir` exactly as the test is (its own TTA and max lengths), or on the
    students' out-of-fold logits. Either way on rows the submitted model never trained on."""
    if rows is not None:
        views = scorers_views(load_scorers(model_dir, settings), rows, text, settings, tta=settings.get("tta", True))
        labels, source = rows["label"].to_numpy(), "calibration rows scored by the final model"
    else:
        views, labels = oof_views(oof_logits)
        source = "the students' out-of-fold logits"
    features = pair_features(rows) if rows is not None else None
    if method == "features" and features is None:
        raise ConfigError("the features calibration reads the answers' texts: fit it on labelled rows", key="predict.calibrate_on")
    fitted = fit_pair_scaling(views, labels, method, features=features)
    report = calibration_report(views, labels, fitted, features)
    log.info(
        "%s calibration on %d rows (%s): log loss %.4f -> %.4f, tie share %.3f -> %.3f (true %.3f)",
        method,
        len(labels),
        source,
        report["log_loss_before"],
        report["log_loss_after"],
        report["tie_share_before"],
        report["tie_share_after"],
        report["tie_share_true"],
    )
    compared = {}
    for other in ("symmetric", "features") if features is not None else ():
        if other != method:
            fit = fit_pair_scaling(views, labels, other, features=features)
            compared[other] = {**fit.to_dict(), **calibration_report(views, labels, fit, features)}
            log.info(
                "compared: %s calibration, log loss %.4f, tie share %.3f",
                other,
                compared[other]["log_loss_after"],
                compared[other]["tie_share_after"],
            )
    return {**fitted.to_dict(), "fitted_on": source, **report, "compared": compared}


def calibration_report(views: Sequence[View], labels: np.ndarray, fitted: PairScaling, features: Features | None) -> dict:
    """A fit's rows, log loss and tie share before and after it, against the prior and the true tie share."""
    before, after = views_probs(views), views_probs(views, fitted, features)
    return {
        "rows": int(len(labels)),
        "log_loss_before": log_loss(before, labels),
        "log_loss_after": log_loss(after, labels),
        "prior_log_loss": prior_log_loss(labels),
        "tie_share_before": float(before[:, 2].mean()),
        "tie_share_after": float(after[:, 2].mean()),
        "tie_share_true": float((labels == 2).mean()),
    }
