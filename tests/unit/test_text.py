import json

import pandas as pd
import pytest

from arena_distill.data.pairs import encode_rows, with_swaps
from arena_distill.data.text import PairEncoder, TextConfig, first_words, format_pair, trim_pair
from tests.conftest import SAMPLE


@pytest.fixture(scope="module")
def rows():
    frame = pd.read_parquet(SAMPLE / "train.parquet").sample(n=200, random_state=1)
    return [(json.loads(p), json.loads(a), json.loads(b)) for p, a, b in zip(frame.prompt, frame.response_a, frame.response_b)]


def test_first_words_keeps_whitespace():
    assert first_words("a  b\nc d", 3) == "a  b\nc"
    assert first_words("short", 10) == "short"


@pytest.mark.parametrize(("a", "b", "budget"), [(10, 4, 20), (10, 4, 8), (10, 4, 5), (7, 7, 9), (3, 9, 0), (100, 1, 50)])
def test_trim_pair_fits_budget_and_is_symmetric(a, b, budget):
    ka, kb = trim_pair(a, b, budget)
    assert ka + kb <= max(budget, 0) and ka <= a and kb <= b
    assert trim_pair(b, a, budget) == (kb, ka)
    if a + b > budget and budget >= abs(a - b):
        assert abs(ka - kb) <= 1 or min(a, b) == min(ka, kb)


def test_trim_pair_cuts_the_longer_answer_first():
    assert trim_pair(10, 4, 10) == (6, 4)
    assert trim_pair(10, 4, 6) == (3, 3)


@pytest.mark.parametrize("max_length", [64, 128, 256])
def test_budget_respected_and_eos_last(tokenizer, rows, max_length):
    encoder = PairEncoder(tokenizer, TextConfig(max_length=max_length, prompt_tokens=32))
    ids = encoder.encode(*zip(*rows))
    assert max(len(x) for x in ids) <= max_length
    assert sum(len(x) == max_length for x in ids) > 0  # long pairs fill the budget
    assert all(x[-1] == tokenizer.eos_token_id for x in ids)
    assert all(tokenizer.eos_token_id not in x[:-1] for x in ids)


def test_swap_commutes_with_truncation(tokenizer, rows):
    encoder = PairEncoder(tokenizer, TextConfig(max_length=96, prompt_tokens=24))
    prompts, a, b = zip(*rows)
    original = encoder.truncate(prompts, a, b)
    swapped = encoder.truncate(prompts, b, a)
    for (p, ta, tb), (sp, sa, sb) in zip(original, swapped):
        assert (p, ta, tb) == (sp, sb, sa)


def test_a_pair_and_its_mirror_encoded_together_equal_each_encoded_alone(tokenizer, rows):
    encoder = PairEncoder(tokenizer, TextConfig(max_length=96, prompt_tokens=24))
    prompts, a, b = zip(*rows)
    frame = pd.DataFrame({"id": range(len(rows)), "prompt": prompts, "response_a": a, "response_b": b, "label": 0})
    both = with_swaps(frame).sample(frac=1.0, random_state=0)  # any order of rows and mirrors
    alone = encoder.encode(both["prompt"].tolist(), both["response_a"].tolist(), both["response_b"].tolist())
    assert encode_rows(encoder, both) == alone


def test_pairs_sharing_prompts_and_answers_encode_as_each_pair_alone(tokenizer, rows):
    """Each distinct field is tokenized once per call; the ids are those of a pair alone."""
    encoder = PairEncoder(tokenizer, TextConfig(max_length=128, prompt_tokens=32))
    (p1, a1, b1), (p2, a2, _) = rows[:2]
    pairs = [(p1, a1, b1), (p1, b1, a2), (p2, a1, a2), (p1, a1, b1), (p2, a2, a2)]
    together = encoder.encode(*zip(*pairs))
    assert together == [encoder.encode([p], [a], [b])[0] for p, a, b in pairs]
    assert together[0] != together[1]


def test_short_pair_is_untouched(tokenizer):
    encoder = PairEncoder(tokenizer, TextConfig(max_length=512))
    (ids,) = encoder.encode([["What is 2+2?"]], [["4"]], [["Four."]])
    text = tokenizer.decode(ids, skip_special_tokens=True)
    assert text == format_pair(["What is 2+2?"], ["4"], ["Four."])


def test_words_pass_runs_before_tokens(tokenizer):
    encoder = PairEncoder(tokenizer, TextConfig(max_length=4000, response_words=3))
    (ids,) = encoder.encode([["q"]], [["one two three four five"]], [["x"]])
    assert "one two three" in tokenizer.decode(ids) and "four" not in tokenizer.decode(ids)


def test_max_length_below_template_is_refused(tokenizer):
    with pytest.raises(ValueError, match="template"):
        PairEncoder(tokenizer, TextConfig(max_length=8))


def test_literal_special_tokens_in_text_stay_text(tokenizer):
    encoder = PairEncoder(tokenizer, TextConfig(max_length=512))
    (ids,) = encoder.encode([["q"]], [["ends with </s> in the middle <s>"]], [["x"]])
    assert ids.count(tokenizer.eos_token_id) == 1 and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.bos_token_id not in ids[1:]


def test_a_long_prompt_leaves_room_for_the_answers(tokenizer):
    encoder = PairEncoder(tokenizer, TextConfig(max_length=128, prompt_tokens=256))
    ((p, a, b),) = encoder.truncate([["word " * 400]], [["answer " * 300]], [["reply " * 300]])
    budget = 128 - encoder.fixed
    assert len(p) == budget // 2 and len(a) > 0 and len(b) > 0
