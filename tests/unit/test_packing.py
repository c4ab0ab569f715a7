"""Packed batches equal padded ones: per-row logits, the summed loss and every trainable
gradient, for the three architectures of the pipeline (fp32, CPU, LoRA dropout 0)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification

from arena_distill.errors import ConfigError
from arena_distill.modeling.batching import packed_batches
from arena_distill.modeling.models import add_lora, compile_layers, tiny_config
from arena_distill.modeling.packing import forward_logits, model_inputs, pooled_index
from arena_distill.modeling.parallel import Parallel
from arena_distill.training.checkpoints import trainable_state
from arena_distill.training.config import TrainConfig, micro_batches
from arena_distill.training.loop import accumulate, train
from arena_distill.training.stages import fingerprint
from arena_distill.training.tasks import ClassificationTask, Examples
from tests.unit.synthetic import PAD, Stop, marker_pairs, stop_at, tiny_classifier

VOCAB, BOS, EOS = 96, 2, 1
SIZES = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 256,
}


def classifier(arch: str, attention: str = "eager", seed: int = 0) -> torch.nn.Module:
    """A tiny sequence classifier of `arch` (pad = EOS) with a LoRA on every projection and a
    trained embedding, as the pipeline trains it. Gemma-2's sliding window is shorter than the
    longest row, so its local layers mask by position inside a row too."""
    config = tiny_config(arch, SIZES, vocab_size=VOCAB, bos_token_id=BOS, eos_token_id=EOS)
    if arch == "gemma2":
        config.sliding_window = 16
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config, attn_implementation=attention)
    model = add_lora(model, {"r": 8, "alpha": 16, "dropout": 0.0, "modules_to_save": ["embed_tokens"]})
    # LoRA's B starts at zero; random values make every gradient and the adapted path non-trivial.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.1)
    return model


def rows(seed: int = 0) -> list[list[int]]:
    """Rows of 3 to 40 tokens ending with EOS, one with EOS inside its text and one ending in
    two EOS (the head then reads further back, as the padded head does)."""
    rng = np.random.default_rng(seed)
    out = [[BOS, *rng.integers(3, VOCAB, n).tolist(), EOS] for n in (38, 5, 17, 1, 29, 11)]
    out[2][6] = EOS
    out[4] = [*out[4], EOS]
    return out


ARCHS = ["llama", "qwen2", "gemma2"]


def test_pooled_index_is_the_rightmost_token_that_is_not_pad():
    assert pooled_index([BOS, 7, 8, EOS], EOS) == 2
    assert pooled_index([BOS, 7, EOS, EOS], EOS) == 1
    assert pooled_index([EOS, EOS], EOS) == 0


def test_a_pack_restarts_positions_and_pools_each_row():
    pack = model_inputs([[BOS, 7, EOS], [BOS, EOS], [BOS, 9, 9, 9, EOS]], EOS, "cpu", packed=True)
    assert pack["input_ids"].tolist() == [[BOS, 7, EOS, BOS, EOS, BOS, 9, 9, 9, EOS]]
    assert pack["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1, 2, 3, 4]]
    assert pack["pool_index"].tolist() == [1, 3, 8]


def test_packed_batches_cover_every_row_once_within_the_budget():
    lengths = np.random.default_rng(0).integers(20, 1024, 500)
    packs = packed_batches(lengths, 4096)
    assert sorted(i for pack in packs for i in pack) == list(range(500))
    assert all(lengths[pack].sum() <= 4096 for pack in packs)
    # first fit, longest first: every pack but the last few is nearly full
    assert lengths.sum() / (4096 * len(packs)) > 0.97
    assert packed_batches([5000, 10], 4096) == [[0], [1]]  # a row over budget travels alone


@pytest.mark.parametrize("arch", ARCHS)
def test_packed_logits_loss_and_gradients_equal_padded(arch):
    model = classifier(arch)
    model.train()
    sequences = rows()
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    outcomes = {}
    for packed in (False, True):
        model.zero_grad(set_to_none=True)
        logits = forward_logits(model, model_inputs(sequences, EOS, "cpu", packed))
        loss = F.cross_entropy(logits, labels, reduction="sum")
        loss.backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
        outcomes[packed] = logits.detach(), loss.detach(), grads
    (padded_logits, padded_loss, padded_grads), (packed_logits, packed_loss, packed_grads) = outcomes[False], outcomes[True]
    assert padded_logits.std() > 0.05  # the rows differ: equality below is not of constants
    torch.testing.assert_close(packed_logits, padded_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(packed_loss, padded_loss, rtol=1e-5, atol=1e-5)
    assert padded_grads.keys() == packed_grads.keys()
    assert any("lora_A" in n for n in padded_grads) and any("score" in n for n in padded_grads)
    for name, grad in padded_grads.items():
        assert grad.abs().max() > 0, name
        torch.testing.assert_close(packed_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("arch", ARCHS)
def test_a_row_in_a_pack_sees_only_itself(arch):
    """Changing one row changes its own logits and no other row's."""
    model = classifier(arch).eval()
    sequences = rows()
    changed = [list(seq) for seq in sequences]
    changed[0][3:10] = [5] * 7
    with torch.no_grad():
        before = forward_logits(model, model_inputs(sequences, EOS, "cpu", packed=True))
        after = forward_logits(model, model_inputs(changed, EOS, "cpu", packed=True))
    assert not torch.allclose(before[0], after[0])
    torch.testing.assert_close(before[1:], after[1:], rtol=0, atol=1e-6)


def test_a_packed_step_gives_the_padded_step_gradient():
    """The loop's accumulation: micro-batches of 2 rows padded vs packs of 60 tokens, over the
    same global batch and normalisation."""
    model = classifier("llama")
    sequences = rows() * 3
    examples = Examples(sequences, {"label": np.arange(len(sequences)) % 3})
    global_rows = list(range(len(sequences)))
    grads = {}
    for packed in (False, True):
        config = TrainConfig(learning_rate=1e-3, micro_batch_size=2, packing=packed, micro_batch_tokens=60)
        plan = micro_batches(global_rows, examples.lengths, config)
        assert len(plan) == (9 if not packed else len(packed_batches(examples.lengths, 60)))
        model.zero_grad(set_to_none=True)
        loss, tokens = accumulate(
            model, ClassificationTask(), examples, global_rows, config, EOS, torch.device("cpu"), Parallel(), bf16=False
        )
        assert tokens == sum(map(len, sequences))
        grads[packed] = loss, {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    assert grads[True][0] == pytest.approx(grads[False][0], rel=1e-5)
    for name, grad in grads[False][1].items():
        torch.testing.assert_close(grads[True][1][name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_gemma2_flex_attention_scores_as_eager():
    """FlexAttention applies Gemma-2's soft-cap exactly: the same logits as eager, padded and
    packed (forward only: torch has no flex backward on CPU)."""
    eager, flex = classifier("gemma2", "eager").eval(), classifier("gemma2", "flex_attention").eval()
    sequences = rows()
    with torch.no_grad():
        for packed in (False, True):
            expected = forward_logits(eager, model_inputs(sequences, EOS, "cpu", packed))
            torch.testing.assert_close(forward_logits(flex, model_inputs(sequences, EOS, "cpu", packed)), expected, rtol=1e-5, atol=1e-5)


def test_packing_refuses_an_attention_path_that_cannot_keep_rows_apart():
    model = classifier("llama")
    model.get_base_model().model.config._attn_implementation = "paged|sdpa"
    with pytest.raises(ConfigError, match="attn_implementation"):
        forward_logits(model, model_inputs(rows(), EOS, "cpu", packed=True))


def test_a_packed_run_resumes_bitwise_and_follows_the_padded_run(tmp_path):
    """Stopped at step 20 of 40, a packed run resumes to the straight packed run's weights,
    and those are the padded loop's weights up to float rounding."""
    config = TrainConfig(learning_rate=3e-3, epochs=1, batch_size=16, packing=True, micro_batch_tokens=96, eval_every=10, seed=0)

    def run(directory, **kwargs):
        model = tiny_classifier(seed=0)
        result = train(
            model,
            ClassificationTask(),
            marker_pairs(640, seed=1),
            marker_pairs(120, seed=2),
            config,
            pad_id=PAD,
            checkpoint_dir=directory,
            fingerprint="packed",
            **kwargs,
        )
        return model, result

    straight, straight_result = run(tmp_path / "straight")
    with pytest.raises(Stop):
        run(tmp_path / "resumed", on_checkpoint=stop_at(20))
    resumed, resumed_result = run(tmp_path / "resumed")
    assert resumed_result.state.resumed_from == [20]
    a, b = trainable_state(straight), trainable_state(resumed)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert resumed_result.metrics["history"] == straight_result.metrics["history"]
    # the padded loop over the same steps reaches the same weights, up to float rounding
    config = replace(config, packing=False, micro_batch_size=4)
    padded, padded_result = run(tmp_path / "padded")
    for step, packed in zip(padded_result.metrics["history"], straight_result.metrics["history"]):
        assert packed["val_loss"] == pytest.approx(step["val_loss"], abs=1e-4)
    c = trainable_state(padded)
    assert max(float((a[name] - c[name]).abs().max()) for name in a) < 1e-4


def test_packing_and_other_execution_settings_keep_the_fingerprint():
    """A checkpoint resumes across how a run computes (packing, micro-batch, attention), never
    across what it learns."""
    base = {"training": {"learning_rate": 1e-3, "micro_batch_size": 8}, "attn_implementation": None}
    same = {"training": {"learning_rate": 1e-3, "packing": True, "micro_batch_tokens": 2048}, "attn_implementation": "flex_attention"}
    assert fingerprint("run", base) == fingerprint("run", same)
    assert fingerprint("run", base) != fingerprint("run", {**base, "training": {"learning_rate": 2e-3, "micro_batch_size": 8}})


def test_compiled_layers_give_the_eager_logits_and_gradients():
    """Regional compile (`training.compile`) fuses element-wise work, it does not change the
    numbers: a tiny Gemma-2 with LoRA, packed, its logits and every trainable gradient."""
    model = classifier("gemma2")
    sequences = rows()
    labels = torch.tensor([0, 1, 2, 0, 1, 2])

    def step() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        logits = forward_logits(model, model_inputs(sequences, EOS, "cpu", packed=True))
        F.cross_entropy(logits, labels, reduction="sum").backward()
        return logits.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}

    eager_logits, eager_grads = step()
    compile_layers(model)
    assert all(layer._compiled_call_impl is not None for layer in model.get_base_model().model.layers)
    logits, grads = step()
    torch.testing.assert_close(logits, eager_logits, rtol=1e-5, atol=1e-5)
    for name, grad in eager_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="FlexAttention's backward runs on GPUs only")
def test_gemma2_flex_attention_trains_as_eager_on_a_gpu():
    """On a GPU (`make test` on a GPU node), flex's gradients equal eager's, packed, in fp32."""
    sequences = rows()
    labels = torch.tensor([0, 1, 2, 0, 1, 2], device="cuda")
    outcomes = []
    for attention in ("eager", "flex_attention"):
        model = classifier("gemma2", attention).cuda()
        logits = forward_logits(model, model_inputs(sequences, EOS, "cuda", packed=True))
        F.cross_entropy(logits, labels, reduction="sum").backward()
        outcomes.append((logits.detach(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}))
    (eager_logits, eager_grads), (flex_logits, flex_grads) = outcomes
    torch.testing.assert_close(flex_logits, eager_logits, rtol=1e-4, atol=1e-4)
    for name, grad in eager_grads.items():
        torch.testing.assert_close(flex_grads[name], grad, rtol=1e-3, atol=1e-5, msg=name)
