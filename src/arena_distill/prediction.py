"""Predicting P(A wins), P(B wins), P(tie) for pairs with a saved classifier.

Test-time augmentation is the original's: each pair is scored as given and with A and B
exchanged; the mirror's probabilities are mapped back (A↔B) and the two are averaged, which
cancels whatever position bias the model kept. Several max lengths may be averaged the
same way. An optional temperature (fitted on out-of-fold predictions) softens or sharpens
the logits before the softmax.
"""

from __future__ import annotations

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

from arena_distill import LABELS
from arena_distill.calibration import fit_temperature
from arena_distill.errors import ConfigError, DataError, NumericalError
from arena_distill.inference import predict_logits
from arena_distill.io import atomic_path
from arena_distill.logits import LOGIT_COLUMNS
from arena_distill.models import attention_implementation, load_tokenizer, resolve_dtype
from arena_distill.pairs import encode_rows, swap_pairs, unswap_probs
from arena_distill.text import PairEncoder, TextConfig

SUBMISSION_COLUMNS = ["id", *LABELS]

log = logging.getLogger(__name__)


def load_classifier(model_dir: str | Path, dtype: str = "auto", gptq_backend: str = "auto") -> tuple[PreTrainedModel, object]:
    """A saved classifier (plain, GPTQ or bitsandbytes) and its tokenizer, ready to score.

    `dtype` (`auto`: bf16 on GPUs that have it, fp16 on a T4, fp32 on CPU) is the precision
    of the unquantized tensors and of the activations. A GPTQ model picks its kernel by
    `gptq_backend`; `auto` lets GPTQModel choose (Machete, then Marlin, then Triton on an
    H100; the first two compile on first use, so a node without nvcc names `gptq_triton`).
    """
    device = "cuda:0" if torch.cuda.is_available() else "cpu"
    tokenizer = load_tokenizer(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, device_map={"": device}, dtype=resolve_dtype(dtype), attn_implementation=attention_implementation(model_dir),
        **gptq_loading(model_dir, gptq_backend),
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer


def gptq_loading(model_dir: str | Path, backend: str) -> dict[str, Any]:
    """The `from_pretrained` argument that pins a GPTQ model's kernel (none for `auto`)."""
    saved = getattr(AutoConfig.from_pretrained(model_dir), "quantization_config", None) or {}
    if backend == "auto" or saved.get("quant_method") != "gptq":
        return {}
    from gptqmodel.utils.backend import BACKEND

    if backend not in {choice.value for choice in BACKEND}:
        raise ConfigError(f"unknown GPTQ backend {backend!r}; GPTQModel has {sorted(b.value for b in BACKEND if 'gptq' in b.value)}",
                          key="predict.gptq_backend")
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
            f"or float32 (predict.dtype)", row=int(ids[int(np.flatnonzero(bad)[0])]),
        )


def order_probs(
    model: PreTrainedModel,
    tokenizer,
    rows: pd.DataFrame,
    text: TextConfig,
    *,
    max_lengths: Sequence[int],
    tta: bool = True,
    max_tokens: int = 16384,
    temperature: float = 1.0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(given order, mirror mapped back to the given order) probabilities, each averaged
    over `max_lengths`; the mirror is None without `tta`."""
    views = [False, True] if tta else [False]
    totals = {swapped: np.zeros((len(rows), len(LABELS))) for swapped in views}
    for max_length in max_lengths:
        encoder = PairEncoder(tokenizer, replace(text, max_length=max_length))
        for swapped in views:
            view = swap_pairs(rows) if swapped else rows
            logits = predict_logits(model, encode_rows(encoder, view), pad_id=tokenizer.pad_token_id, max_tokens=max_tokens,
                                    desc="swapped" if swapped else "original")
            check_finite(logits, rows["id"].tolist(), model)
            probs = softmax(logits.astype(np.float64) / temperature, axis=1)
            totals[swapped] += unswap_probs(probs) if swapped else probs
    plain = totals[False] / len(max_lengths)
    return plain, (totals[True] / len(max_lengths) if tta else None)


def pair_probs(model: PreTrainedModel, tokenizer, rows: pd.DataFrame, text: TextConfig, **settings) -> np.ndarray:
    """Probabilities (rows × [a, b, tie]): the given order, or with `tta` its mean with the mirror."""
    plain, mirror = order_probs(model, tokenizer, rows, text, **settings)
    return plain if mirror is None else (plain + mirror) / 2


def probs_frame(ids: Sequence[int], probs: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame({"id": np.asarray(ids, dtype=np.int64)})
    for i, label in enumerate(LABELS):
        frame[label] = probs[:, i]
    return frame


def check_submission(frame: pd.DataFrame, ids: Sequence[int], file: str) -> None:
    """Raise DataError unless `frame` is a valid submission for exactly `ids`."""
    if list(frame.columns) != SUBMISSION_COLUMNS:
        raise DataError(f"columns are {list(frame.columns)}, expected {SUBMISSION_COLUMNS}", file=file)
    if sorted(frame["id"].tolist()) != sorted(int(i) for i in ids) or frame["id"].duplicated().any():
        extra = sorted(set(frame["id"]) ^ set(int(i) for i in ids)) or frame.loc[frame["id"].duplicated(), "id"].tolist()
        raise DataError("ids differ from the test ids", file=file, row=extra[0] if extra else None, column="id")
    values = frame[list(LABELS)].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values).all(axis=1) | (values < 0).any(axis=1) | (values > 1).any(axis=1) | (np.abs(values.sum(axis=1) - 1) > 1e-6)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"probabilities {values[row].tolist()} are not a distribution", file=file, row=int(frame['id'].iloc[row]), column=LABELS[0])


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    """CSV or parquet by suffix, written atomically."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise ValueError(f"unsupported output format {suffix!r} for {path}: use .csv or .parquet")
    with atomic_path(path) as tmp:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False, float_format="%.8f")
        else:
            frame.to_parquet(tmp, index=False)


def oof_temperature(paths: Sequence[str | Path]) -> float:
    """The temperature fitted on the original-order rows of out-of-fold logits tables."""
    frame = pd.concat([pd.read_parquet(path) for path in paths], ignore_index=True)
    frame = frame[~frame["swapped"]]
    return fit_temperature(frame[LOGIT_COLUMNS].to_numpy(), frame["label"].to_numpy())


def predict_table(
    model_dir: str | Path,
    rows: pd.DataFrame,
    text: Mapping[str, Any],
    settings: Mapping[str, Any],
    oof_logits: Sequence[str | Path] = (),
) -> pd.DataFrame:
    """Submission-schema probabilities of `rows` (prepared pairs) from the model at `model_dir`."""
    temperature = oof_temperature(oof_logits) if settings.get("temperature") else 1.0
    if temperature != 1.0:
        log.info("temperature %.4f fitted on %d out-of-fold tables", temperature, len(oof_logits))
    model, tokenizer = load_classifier(model_dir, settings.get("dtype", "auto"), settings.get("gptq_backend", "auto"))
    probs = pair_probs(
        model,
        tokenizer,
        rows,
        TextConfig(max_length=settings["max_lengths"][0], prompt_words=text["prompt_words"], response_words=text["response_words"],
                   prompt_tokens=text["prompt_tokens"]),
        max_lengths=settings["max_lengths"],
        tta=settings.get("tta", True),
        max_tokens=settings.get("max_tokens", 65536),
        temperature=temperature,
    )
    return probs_frame(rows["id"].tolist(), probs)
