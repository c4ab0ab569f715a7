"""The prompt judge of the other source document: a causal LM is asked to compare the two
responses on five criteria and to vote, and its vote is read from likelihoods, not sampled.

The votes are A, B, AB (both good: a tie) and NA (neither: a tie). Each vote's score is the
log-likelihood the model gives the vote's text right after the prompt; a softmax over the
four gives (A, B, AB, NA), and P(tie) = P(AB) + P(NA). Every pair is judged as given and
with A and B exchanged, and the two averaged, as `predict` does. Scoring the whole vote text
(not only its first token) keeps AB apart from A under any tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from transformers import AutoModelForCausalLM, PreTrainedModel

from arena_distill.data.pairs import SWAPPED_LABEL
from arena_distill.data.text import join_turns
from arena_distill.errors import ConfigError
from arena_distill.modeling.batching import token_budget_batches
from arena_distill.modeling.model_lock import locked_path
from arena_distill.modeling.models import load_tokenizer

VOTES = ("A", "B", "AB", "NA")
INSTRUCTION = (
    "Two assistants answered the user's prompt below. Compare their responses on relevance, accuracy, "
    "clarity, logical flow and responsiveness to the prompt. Vote A if response A is better, B if response B "
    "is better, AB if both are good, NA if neither is.\n\n"
)
PARTS = ("Prompt:\n", "\n\nResponse A:\n", "\n\nResponse B:\n", "\n\nVote:")


def load_judge(path: str, dtype: torch.dtype = torch.float32):
    """The causal LM and its tokenizer; a missing local path is an error, not a download, and a
    hub id is loaded from its locked snapshot."""
    path = locked_path(path)
    tokenizer = load_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()
    return model, tokenizer


def truncated(tokenizer, text: str, tokens: int) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"][: max(tokens, 0)]


def judge_ids(tokenizer, prompt: str, response_a: str, response_b: str, max_length: int, prompt_tokens: int) -> list[int]:
    """The judge prompt's token ids within `max_length` (the vote's tokens come after): the
    user prompt gets at most `prompt_tokens`, the two responses share the rest alike."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    fixed = [truncated(tokenizer, text, 10**6) for text in (INSTRUCTION, *PARTS)]
    vote = max(len(truncated(tokenizer, " " + v, 99)) for v in VOTES)
    room = max_length - len(bos) - sum(map(len, fixed)) - vote
    if room < 16:
        raise ConfigError(f"{max_length} tokens leave {room} for the pair after the judge's instruction and vote", key="judge.max_length")
    head = truncated(tokenizer, prompt, min(prompt_tokens, room // 3))
    each = (room - len(head)) // 2
    a, b = truncated(tokenizer, response_a, each), truncated(tokenizer, response_b, each)
    return bos + fixed[0] + fixed[1] + head + fixed[2] + a + fixed[3] + b + fixed[4]


@torch.no_grad()
def vote_log_likelihoods(model: PreTrainedModel, tokenizer, prompts: Sequence[list[int]], max_tokens: int) -> np.ndarray:
    """rows x votes: the summed log-probability of each vote's tokens after its prompt."""
    votes = [truncated(tokenizer, " " + vote, 99) for vote in VOTES]
    sequences = [(row, v, ids + vote) for row, ids in enumerate(prompts) for v, vote in enumerate(votes)]
    scores = np.zeros((len(prompts), len(VOTES)))
    pad = tokenizer.pad_token_id
    for batch in token_budget_batches([len(s[2]) for s in sequences], max_tokens):
        chunk = [sequences[i] for i in batch]
        width = max(len(ids) for _, _, ids in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, (_, _, seq) in enumerate(chunk):
            ids[i, : len(seq)], mask[i, : len(seq)] = torch.tensor(seq), 1
        logprobs = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
        for i, (row, v, seq) in enumerate(chunk):
            n = len(votes[v])
            positions = torch.arange(len(seq) - n - 1, len(seq) - 1)
            scores[row, v] = logprobs[i, positions, torch.tensor(seq[-n:])].sum().item()
    return scores


def vote_probs(scores: np.ndarray) -> np.ndarray:
    """(A, B, tie) from the four votes' log-likelihoods: a softmax, AB and NA summed as the tie."""
    votes = torch.softmax(torch.as_tensor(scores, dtype=torch.float64), dim=1).numpy()
    return np.stack([votes[:, 0], votes[:, 1], votes[:, 2] + votes[:, 3]], axis=1)


def judge_rows(
    model: PreTrainedModel, tokenizer, rows: pd.DataFrame, *, max_length: int, prompt_tokens: int, max_tokens: int
) -> np.ndarray:
    """TTA probabilities (A, B, tie) of `rows` (Kaggle columns): as given and mirrored, averaged."""
    prompts = [join_turns(p) for p in rows["prompt"]]
    a, b = [join_turns(r) for r in rows["response_a"]], [join_turns(r) for r in rows["response_b"]]
    given = [judge_ids(tokenizer, p, x, y, max_length, prompt_tokens) for p, x, y in zip(prompts, a, b)]
    mirrored = [judge_ids(tokenizer, p, y, x, max_length, prompt_tokens) for p, x, y in zip(prompts, a, b)]
    scores = vote_log_likelihoods(model, tokenizer, given + mirrored, max_tokens)
    probs = vote_probs(scores)
    return (probs[: len(rows)] + probs[len(rows) :][:, SWAPPED_LABEL]) / 2
