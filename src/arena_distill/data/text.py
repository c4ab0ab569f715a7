"""The 1st-place input format and its truncation.

No chat template: a plain-text question header, the prompt in triple quotes, then the two
answers likewise, EOS appended (pad = EOS, the classifier reads the last non-pad token).
Multi-turn fields are joined with newlines.

Truncation keeps the head of each field and runs in two passes:

1. words: the prompt keeps its first `prompt_words` words, each response `response_words`;
2. tokens, only when the encoded pair is over `max_length`: the prompt is cut to
   `prompt_tokens` (and never to more than half the budget, so a long prompt cannot leave
   the answers empty when `prompt_tokens` is large for a small `max_length`), then the
   longer answer is trimmed until both are equally long, then both by the same amount.

Every step treats A and B alike, so truncating the swapped pair gives exactly the swapped
truncation: swap-TTA and swap augmentation see the same text in the other order.

This module imports the standard library only: it ships verbatim beside the served model as
`pair_format.py` (`package_model`), the format a plain `transformers` user encodes with.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the annotation only: importing transformers costs a light job ~1 s
    from transformers import PreTrainedTokenizerBase

HEADER = 'User question:\n"""\n'
BEFORE_A = '\n"""\n\nAnswer A:\n"""\n'
BEFORE_B = '\n"""\n\nAnswer B:\n"""\n'
FOOTER = '\n"""'
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class TextConfig:
    """Budgets of the format. `max_length` is 1024 in training and 2000 at test in the original."""

    max_length: int
    prompt_words: int = 256
    response_words: int = 700
    prompt_tokens: int = 256

    @classmethod
    def of(cls, text: Mapping[str, Any], max_length: int) -> "TextConfig":
        """The config's `text` block at one length (training's, or one of the test lengths)."""
        return cls(
            max_length=max_length,
            prompt_words=text["prompt_words"],
            response_words=text["response_words"],
            prompt_tokens=text["prompt_tokens"],
        )


def join_turns(turns: Sequence[str] | str) -> str:
    return turns if isinstance(turns, str) else "\n".join(turns)


def first_words(text: str, n: int) -> str:
    """The text up to the end of its n-th word, original whitespace kept."""
    for count, match in enumerate(_WORD.finditer(text), start=1):
        if count == n:
            return text[: match.end()]
    return text


def format_pair(prompt: Sequence[str] | str, response_a: Sequence[str] | str, response_b: Sequence[str] | str) -> str:
    """The full text of one pair, before token truncation (for tokenizer training, calibration)."""
    return HEADER + join_turns(prompt) + BEFORE_A + join_turns(response_a) + BEFORE_B + join_turns(response_b) + FOOTER


CHARS_PER_TOKEN = 4
"""Characters per token of English text under the real models' large vocabularies (Llama-3,
Gemma-2): the usual rule of thumb, for lengths measured without the tokenizer at hand."""


def approximate_length(
    prompt: Sequence[str] | str, response_a: Sequence[str] | str, response_b: Sequence[str] | str, config: TextConfig
) -> int:
    """Tokens of a pair under `config` without a tokenizer: the word-cut text at
    `CHARS_PER_TOKEN`, plus EOS, capped at `max_length`. For length distributions (benchmarks,
    padding shares) where the real model's tokenizer is not available."""
    text = format_pair(
        first_words(join_turns(prompt), config.prompt_words),
        first_words(join_turns(response_a), config.response_words),
        first_words(join_turns(response_b), config.response_words),
    )
    return min(config.max_length, -(-len(text) // CHARS_PER_TOKEN) + 1)


def approximate_lengths(rows: Any, config: TextConfig) -> list[int]:
    """`approximate_length` of every pair of a pair table (`prompt`, `response_a`, `response_b`)."""
    return [approximate_length(p, a, b, config) for p, a, b in zip(rows["prompt"], rows["response_a"], rows["response_b"])]


def trim_pair(a_len: int, b_len: int, budget: int) -> tuple[int, int]:
    """Lengths the two answers keep so that together they fit `budget` tokens.

    The longer one is trimmed first down to the shorter; any excess left is taken from
    both equally (rounded up, so the pair may end one token under budget but stays
    symmetric).
    """
    excess = a_len + b_len - max(budget, 0)
    if excess <= 0:
        return a_len, b_len
    gap = min(abs(a_len - b_len), excess)
    if a_len > b_len:
        a_len -= gap
    else:
        b_len -= gap
    excess -= gap
    if excess > 0:
        each = (excess + 1) // 2
        a_len, b_len = max(a_len - each, 0), max(b_len - each, 0)
    return a_len, b_len


class PairEncoder:
    """Encodes pairs into input ids under a `TextConfig` with one tokenizer."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, config: TextConfig):
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no EOS token; the format appends EOS and pads with it")
        self.tokenizer = tokenizer
        self.config = config
        self.bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        self.eos = [tokenizer.eos_token_id]
        header, before_a, before_b, footer = self._encode([HEADER, BEFORE_A, BEFORE_B, FOOTER])
        self.header, self.before_a, self.before_b, self.footer = header, before_a, before_b, footer
        self.fixed = len(self.bos) + len(header) + len(before_a) + len(before_b) + len(footer) + len(self.eos)
        if config.max_length <= self.fixed:
            raise ValueError(f"max_length {config.max_length} leaves no room for text: the template alone is {self.fixed} tokens")

    def _encode(self, texts: list[str]) -> list[list[int]]:
        # split_special_tokens: a literal "</s>" in a response is text, not a second EOS.
        if not texts:
            return []
        return self.tokenizer(texts, add_special_tokens=False, split_special_tokens=True)["input_ids"]

    def _field_ids(self, fields: Sequence[Sequence[str] | str], words: int) -> list[list[int]]:
        """Token ids of each field cut to its first `words` words, each distinct field cut
        and tokenized once: a prompt comes with every pair of its answers and an answer with
        every rival (the sample's 10k pairs hold ~3.8k distinct texts)."""
        joined = [join_turns(field) for field in fields]
        distinct = list(dict.fromkeys(joined))
        ids = dict(zip(distinct, self._encode([first_words(text, words) for text in distinct])))
        return [ids[text] for text in joined]

    def truncate(
        self, prompts: Sequence[str], responses_a: Sequence[str], responses_b: Sequence[str]
    ) -> list[tuple[list[int], list[int], list[int]]]:
        """Token ids of (prompt, A, B) per pair after both truncation passes."""
        cfg = self.config
        n = len(prompts)
        answers = self._field_ids([*responses_a, *responses_b], cfg.response_words)
        budget = cfg.max_length - self.fixed
        result = []
        for p, a, b in zip(self._field_ids(prompts, cfg.prompt_words), answers[:n], answers[n:]):
            if len(p) + len(a) + len(b) > budget:
                p = p[: min(cfg.prompt_tokens, budget // 2)]
                a_len, b_len = trim_pair(len(a), len(b), budget - len(p))
                a, b = a[:a_len], b[:b_len]
            result.append((p, a, b))
        return result

    def assemble(self, prompt: list[int], answer_a: list[int], answer_b: list[int]) -> list[int]:
        """Input ids of one pair from its truncated pieces."""
        return self.bos + self.header + prompt + self.before_a + answer_a + self.before_b + answer_b + self.footer + self.eos

    def encode(self, prompts: Sequence[str], responses_a: Sequence[str], responses_b: Sequence[str]) -> list[list[int]]:
        """Input ids of each pair, at most `max_length` long, ending in EOS."""
        return [self.assemble(p, a, b) for p, a, b in self.truncate(prompts, responses_a, responses_b)]
