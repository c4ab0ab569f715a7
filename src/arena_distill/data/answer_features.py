"""Answer features of a pair: plain string statistics of each response, no model, no network,
standard library only, so the module ships beside the served model (`package_model`) for the
`features` calibration of a user with `transformers` alone.

Each response gets length and format counts and six named scores:

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

A pair's features (`features_of_pair`) are the A - B differences of every response feature
(which flip sign with the order), their absolute values (which do not: the tie signal) and
the prompt's log length. The heuristic model (`heuristic_model`) and the `features`
calibration (`calibration.FeatureTerms`) both read them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

SWEET_SPOT_WORDS = 180.0
SWEET_SPOT_WIDTH = 0.9
"""Log-words width of the sweet spot: about 70 to 440 words score above 0.5."""
NEGATIONS = frozenset(
    {
        "not",
        "no",
        "never",
        "cannot",
        "isn't",
        "aren't",
        "wasn't",
        "weren't",
        "don't",
        "doesn't",
        "didn't",
        "won't",
        "can't",
        "shouldn't",
        "wouldn't",
        "couldn't",
        "nothing",
        "none",
    }
)
POLITE = ("please", "thank", "happy to", "glad", "hope this helps", "let me know", "certainly", "of course", "sure")
REFUSALS = (
    "i'm sorry",
    "i am sorry",
    "i cannot",
    "i can't",
    "as an ai",
    "i'm not able",
    "i am not able",
    "i apologize",
    "i don't have",
    "unable to",
    "not appropriate",
)
WORD = re.compile(r"[a-z0-9']+")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
VOWEL_GROUP = re.compile(r"[aeiouy]+")
FEATURES = (
    "chars",
    "words",
    "sentences",
    "lines",
    "list_items",
    "headers",
    "code_blocks",
    "bold",
    "readability_score",
    "conciseness_sweet_spot_score",
    "verbosity_penalty",
    "contradiction_ratio",
    "semantic_consistency_score",
    "mediator_quality_score",
)


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
    return with_prompt + (sum(between) / len(between) if between else 0.0)


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


def combine(prompt: str, answer_a: Sequence[float], answer_b: Sequence[float]) -> list[float]:
    """A pair's features from its answers' `response_features` values: A - B, |A - B|, the
    prompt's log length (characters). The mirrored pair is `combine(prompt, answer_b, answer_a)`."""
    return [a - b for a, b in zip(answer_a, answer_b)] + [abs(a - b) for a, b in zip(answer_a, answer_b)] + [math.log1p(len(prompt))]


def features_of_pair(prompt: str, response_a: str, response_b: str) -> list[float]:
    """The features of one pair as given (each field one text: turns joined by newlines)."""
    return combine(prompt, list(response_features(prompt, response_a).values()), list(response_features(prompt, response_b).values()))
