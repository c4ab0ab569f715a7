"""Heuristic text features of a response and a small model over them: the source documents'
"analytical proxies for human-likeness", as a baseline, an evaluation row and optionally one
more teacher for the student.

Each response gets length and format counts and six named scores (plain string statistics,
no model, no network):

- `readability_score`: Flesch reading ease from words per sentence and syllables per word
  (syllables counted as vowel groups), clipped to 0..100;
- `conciseness_sweet_spot_score`: how close the word count is to a middle length, a Gaussian
  in log words around SWEET_SPOT_WORDS;
- `verbosity_penalty`: repetition (1 - distinct / all words) plus how far the length runs past
  the sweet spot, in log words;
- `contradiction_ratio`: share of sentences that negate another sentence of the same response
  while sharing most of its words;
- `semantic_consistency_score`: word overlap with the prompt and between neighbouring sentences;
- `mediator_quality_score`: polite and cooperative markers minus refusal and evasion markers.

A pair's features are the A - B differences (which flip sign with the order) and their
absolute values (which do not: the tie signal), beside the prompt's length. A multinomial
logistic regression per fold learns from the fold's training rows; its fitted numbers are
saved as JSON, so the test rows are scored by a job of their own and a new test file never
refits it (nor, through its teacher logits, retrains a student).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from arena_distill.io import atomic_path, read_json, read_parquet, write_json
from arena_distill.logits import logits_frame
from arena_distill.metrics import validation_metrics
from arena_distill.pairs import SWAPPED_LABEL, fold_rows
from arena_distill.text import join_turns

SWEET_SPOT_WORDS = 180.0
SWEET_SPOT_WIDTH = 0.9
"""Log-words width of the sweet spot: about 70 to 440 words score above 0.5."""
NEGATIONS = frozenset({"not", "no", "never", "cannot", "isn't", "aren't", "wasn't", "weren't", "don't", "doesn't",
                       "didn't", "won't", "can't", "shouldn't", "wouldn't", "couldn't", "nothing", "none"})
POLITE = ("please", "thank", "happy to", "glad", "hope this helps", "let me know", "certainly", "of course", "sure")
REFUSALS = ("i'm sorry", "i am sorry", "i cannot", "i can't", "as an ai", "i'm not able", "i am not able",
            "i apologize", "i don't have", "unable to", "not appropriate")
WORD = re.compile(r"[a-z0-9']+")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
VOWEL_GROUP = re.compile(r"[aeiouy]+")
FEATURES = ("chars", "words", "sentences", "lines", "list_items", "headers", "code_blocks", "bold", "readability_score",
            "conciseness_sweet_spot_score", "verbosity_penalty", "contradiction_ratio", "semantic_consistency_score",
            "mediator_quality_score")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def sentences(text: str) -> list[str]:
    return [s for s in (part.strip() for part in SENTENCE_END.split(text)) if WORD.search(s.lower())]


def syllables(word: str) -> int:
    return max(1, len(VOWEL_GROUP.findall(word)))


def readability_score(text: str) -> float:
    tokens, parts = words(text), sentences(text)
    if not tokens:
        return 0.0
    score = 206.835 - 1.015 * len(tokens) / max(1, len(parts)) - 84.6 * sum(map(syllables, tokens)) / len(tokens)
    return float(min(100.0, max(0.0, score)))


def conciseness_sweet_spot_score(text: str) -> float:
    distance = math.log1p(len(words(text))) - math.log1p(SWEET_SPOT_WORDS)
    return math.exp(-(distance**2) / (2 * SWEET_SPOT_WIDTH**2))


def verbosity_penalty(text: str) -> float:
    tokens = words(text)
    if not tokens:
        return 0.0
    repetition = 1.0 - len(set(tokens)) / len(tokens)
    return repetition + max(0.0, math.log1p(len(tokens)) - math.log1p(SWEET_SPOT_WORDS))


def contradiction_ratio(text: str) -> float:
    """Sentences with a negation whose other words mostly (≥ 60 %) appear in a sentence without one."""
    bags = [(set(words(s)) - NEGATIONS, bool(set(words(s)) & NEGATIONS)) for s in sentences(text)]
    if len(bags) < 2:
        return 0.0
    contradicting = sum(
        1
        for bag, negated in bags
        if negated and bag and any(not other_neg and len(bag & other) >= 0.6 * len(bag) for other, other_neg in bags if other is not bag)
    )
    return contradicting / len(bags)


def overlap(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def semantic_consistency_score(prompt: str, text: str) -> float:
    bags = [set(words(s)) for s in sentences(text)]
    with_prompt = overlap(set(words(prompt)), set(words(text)))
    between = [overlap(a, b) for a, b in zip(bags, bags[1:])]
    return with_prompt + (float(np.mean(between)) if between else 0.0)


def mediator_quality_score(text: str) -> float:
    lowered = text.lower()
    return float(sum(lowered.count(m) for m in POLITE) - 2 * sum(lowered.count(m) for m in REFUSALS))


def response_features(prompt: str, text: str) -> dict[str, float]:
    """The named features of one response to `prompt`."""
    lines = text.splitlines()
    return {
        "chars": math.log1p(len(text)),
        "words": math.log1p(len(words(text))),
        "sentences": math.log1p(len(sentences(text))),
        "lines": math.log1p(len(lines)),
        "list_items": math.log1p(sum(bool(re.match(r"\s*([-*•]|\d+[.)])\s", line)) for line in lines)),
        "headers": math.log1p(sum(line.lstrip().startswith("#") for line in lines)),
        "code_blocks": math.log1p(text.count("```") // 2),
        "bold": math.log1p(text.count("**") // 2),
        "readability_score": readability_score(text),
        "conciseness_sweet_spot_score": conciseness_sweet_spot_score(text),
        "verbosity_penalty": verbosity_penalty(text),
        "contradiction_ratio": contradiction_ratio(text),
        "semantic_consistency_score": semantic_consistency_score(prompt, text),
        "mediator_quality_score": mediator_quality_score(text),
    }


def joined(cell) -> str:
    """A table cell as one text: the prepared tables hold each side as an array of turns, the
    Kaggle files as a JSON list of them."""
    if isinstance(cell, str):
        try:
            cell = json.loads(cell)
        except ValueError:
            return cell
        if not isinstance(cell, list):
            return str(cell)
    return join_turns([str(turn) for turn in cell if turn is not None])


def pair_features(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per pair, as given and mirrored (B as A): A - B of every feature, |A - B|, and the
    prompt's log length. Each distinct response to a prompt is measured once, for both orders
    and every pair it is in (an answer meets several rivals: the sample's 10k pairs hold ~3.4k
    answers)."""
    prompts = rows["prompt"].map(joined)
    measured: dict[tuple[str, str], list[float]] = {}

    def features(prompt: str, cell) -> list[float]:
        key = (prompt, joined(cell))
        if key not in measured:
            measured[key] = list(response_features(*key).values())
        return measured[key]

    a = np.array([features(p, t) for p, t in zip(prompts, rows["response_a"])])
    b = np.array([features(p, t) for p, t in zip(prompts, rows["response_b"])])
    a, b = a.reshape(len(rows), len(FEATURES)), b.reshape(len(rows), len(FEATURES))
    prompt_length = np.log1p(prompts.str.len().to_numpy(dtype=np.float64))[:, None]
    return np.hstack([a - b, np.abs(a - b), prompt_length]), np.hstack([b - a, np.abs(a - b), prompt_length])


def both_orders(rows: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """`rows` (with `id`) as given and mirrored, in the teachers' layout (`id`, `swapped`), and
    their features in that order."""
    index = pd.DataFrame({"id": np.concatenate([rows["id"].to_numpy()] * 2), "swapped": [False] * len(rows) + [True] * len(rows)})
    return index, np.vstack(pair_features(rows))


def mirrored_labels(labels: np.ndarray) -> np.ndarray:
    """Labels in `both_orders`' order: as given, then each mirror's (the swapped label)."""
    return np.concatenate([labels, SWAPPED_LABEL[labels]])


def fit_heuristic_model(features: np.ndarray, labels: np.ndarray, seed: int = 0) -> Pipeline:
    """Standardized features into a multinomial logistic regression (L2, C = 1), fitted on
    rows in both orders (`both_orders`' features, `mirrored_labels`), so it is order-symmetric."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=seed)).fit(features, labels)


def heuristic_logits(model: Pipeline, features: np.ndarray) -> np.ndarray:
    """Log-probabilities for (A, B, tie), the logits a student can learn from. A class the
    fold's rows never showed (AlpacaEval has few ties) gets 1e-6 before normalizing."""
    probs = np.full((len(features), 3), 1e-6)
    if len(features):  # a run without a holdout scores no row (sklearn refuses an empty array)
        probs[:, model.classes_] = model.predict_proba(features)
    return np.log(probs / probs.sum(axis=1, keepdims=True))


def heuristic_table(model: Pipeline, rows: pd.DataFrame, extra: dict | None = None) -> pd.DataFrame:
    """The model's logits on `rows` in both orders, as a teacher's logits table."""
    index, features = both_orders(rows)
    return logits_frame(index, heuristic_logits(model, features), extra)


def scored_table(model: Pipeline, row_set: str, rows: pd.DataFrame) -> pd.DataFrame:
    """TTA probabilities per labelled row, in `score_holdout`'s per-row layout."""
    given, mirrored = (np.exp(heuristic_logits(model, f)) for f in pair_features(rows))
    table = pd.DataFrame({"rows": row_set, "id": rows["id"].to_numpy(), "label": rows["label"].to_numpy()})
    table[["p_a", "p_b", "p_tie"]] = (given + mirrored[:, SWAPPED_LABEL]) / 2
    return table


def model_record(model: Pipeline) -> dict:
    """The fitted numbers of `fit_heuristic_model`'s pipeline, JSON-able (no pickle: a file
    that is loaded must not be able to run code)."""
    scaler, regression = model.named_steps["standardscaler"], model.named_steps["logisticregression"]
    return {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(), "classes": regression.classes_.tolist(),
            "coef": regression.coef_.tolist(), "intercept": regression.intercept_.tolist()}


def model_from_record(record: Mapping) -> Pipeline:
    """The pipeline `model_record` saved, ready to predict (the same probabilities)."""
    scaler, regression = StandardScaler(), LogisticRegression()
    scaler.mean_, scaler.scale_ = np.asarray(record["mean"]), np.asarray(record["scale"])
    scaler.var_, scaler.n_features_in_ = scaler.scale_**2, len(record["mean"])
    regression.classes_, regression.coef_ = np.asarray(record["classes"]), np.asarray(record["coef"])
    regression.intercept_, regression.n_features_in_ = np.asarray(record["intercept"]), len(record["mean"])
    return make_pipeline(scaler, regression)


def score_test(model: str, test_rows: pd.DataFrame, out: str) -> None:
    """A fold's saved model (`model_record`) on the labelled test rows: their TTA probabilities
    in `scored_table`'s layout."""
    with atomic_path(out) as tmp:
        scored_table(model_from_record(read_json(model)), "test", test_rows).to_parquet(tmp, index=False)


def heuristic_model(
    *,
    train_table: str,
    folds: str,
    fold: int,
    teacher_rows: str,
    outputs: Mapping[str, str],
) -> dict:
    """One fold: fit on the fold's training rows, then write its logits as a teacher's
    (`outputs["logits"]`: the training rows, or the validation rows with `teacher_rows: oof`),
    its out-of-fold logits with labels (`val_logits`), its TTA probabilities on the holdout
    rows (`scored`) and the fitted model (`model`). Returns the out-of-fold metrics."""
    table, split = read_parquet(train_table), read_json(folds)
    train_rows, val_rows = fold_rows(table, split, fold, "train"), fold_rows(table, split, fold, "val")
    # The training rows' features serve the fit and their teacher logits: computed once.
    train_index, train_features = both_orders(train_rows)
    model = fit_heuristic_model(train_features, mirrored_labels(train_rows["label"].to_numpy()))
    val_table = heuristic_table(model, val_rows, {"label": mirrored_labels(val_rows["label"].to_numpy())})
    if teacher_rows == "train":
        teacher_table = logits_frame(train_index, heuristic_logits(model, train_features))
    else:
        teacher_table = val_table.drop(columns="label")
    holdout = table.set_index("id").loc[split.get("holdout_ids", [])].reset_index()
    for name, frame in (("logits", teacher_table), ("val_logits", val_table), ("scored", scored_table(model, "holdout", holdout))):
        with atomic_path(outputs[name]) as tmp:
            frame.to_parquet(tmp, index=False)
    write_json(model_record(model), outputs["model"])
    return validation_metrics(val_table)
