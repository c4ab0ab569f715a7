"""The prompt judge: its prompt fits its budget, votes become (A, B, tie), and the order does not matter."""

import math

import numpy as np
import pandas as pd
import pytest

from arena_distill.baselines.prompt_judge import INSTRUCTION, VOTES, judge_ids, judge_rows, vote_log_likelihoods, vote_probs
from arena_distill.errors import ConfigError


def test_votes_become_a_b_and_a_tie_that_sums_ab_and_na():
    probs = vote_probs(np.log([[0.4, 0.3, 0.2, 0.1]]))
    assert probs[0] == pytest.approx([0.4, 0.3, 0.3])


@pytest.fixture(scope="module")
def judge(tokenizer):
    from arena_distill.modeling.models import build_tiny_model

    sizes = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 64}
    return build_tiny_model("llama", tokenizer, sizes, seed=0).eval(), tokenizer


def test_the_prompt_keeps_its_instruction_and_fits_the_budget(judge):
    _, tokenizer = judge
    ids = judge_ids(tokenizer, "why? " * 200, "long answer " * 300, "short", max_length=256, prompt_tokens=16)
    votes = max(len(tokenizer(" " + v, add_special_tokens=False)["input_ids"]) for v in VOTES)
    assert 150 < len(ids) and len(ids) + votes <= 256  # A is cut to its half; B is short
    assert tokenizer.decode(ids, skip_special_tokens=True).startswith(INSTRUCTION[:40])
    with pytest.raises(ConfigError, match="leave .* for the pair") as error:
        judge_ids(tokenizer, "why?", "a", "b", max_length=100, prompt_tokens=16)
    assert error.value.key == "judge.max_length"


def test_each_vote_is_scored_as_a_whole_continuation(judge):
    model, tokenizer = judge
    ids = judge_ids(tokenizer, "a question", "answer one", "answer two", max_length=192, prompt_tokens=16)
    batched = vote_log_likelihoods(model, tokenizer, [ids, ids[:-3]], max_tokens=10_000)
    alone = vote_log_likelihoods(model, tokenizer, [ids], max_tokens=1)  # one sequence per batch
    assert np.allclose(batched[0], alone[0], atol=1e-4) and (batched < 0).all()


def test_a_pair_and_its_mirror_are_judged_alike(judge):
    model, tokenizer = judge
    rows = pd.DataFrame({"prompt": [["which is better?"]], "response_a": [["the first"]], "response_b": [["the second one"]]})
    mirror = rows.rename(columns={"response_a": "response_b", "response_b": "response_a"})
    settings = dict(max_length=192, prompt_tokens=16, max_tokens=10_000)
    given, swapped = judge_rows(model, tokenizer, rows, **settings), judge_rows(model, tokenizer, mirror, **settings)
    assert math.isclose(given.sum(), 1.0) and given[0] == pytest.approx(swapped[0][[1, 0, 2]], abs=1e-6)
