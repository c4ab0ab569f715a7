import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from arena_distill import LABELS
from arena_distill.data.text import PairEncoder, TextConfig
from arena_distill.errors import DataError
from arena_distill.modeling.models import TINY_ARCHS, ModelSpec, add_lora, build_tiny_model, load_adapter, load_model, save_model
from arena_distill.serving.prediction import load_classifier
from arena_distill.student.adapters import read_adapter

SIZES = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64, max_position_embeddings=512
)


def test_spec_parsing():
    assert ModelSpec("tiny:gemma2").arch == "gemma2"
    assert not ModelSpec("google/gemma-2-9b-it").is_tiny
    with pytest.raises(ValueError, match="unknown tiny architecture"):
        ModelSpec("tiny:mamba").arch


@pytest.mark.parametrize("arch", sorted(TINY_ARCHS))
def test_tiny_round_trip_and_classifier_forward(arch, tokenizer, tmp_path):
    model = build_tiny_model(arch, tokenizer, SIZES, seed=0)
    save_model(model, tokenizer, tmp_path / arch)
    assert not list(tmp_path.glob(".*tmp"))  # no staging directory left behind

    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / arch)
    for (name, a), (_, b) in zip(model.state_dict().items(), reloaded.state_dict().items()):
        assert torch.equal(a, b), name

    tok = AutoTokenizer.from_pretrained(tmp_path / arch)
    assert tok.pad_token_id == tok.eos_token_id == tokenizer.eos_token_id
    classifier = AutoModelForSequenceClassification.from_pretrained(tmp_path / arch).eval()
    assert classifier.config.num_labels == 3 and classifier.config.id2label[2] == LABELS[2]
    assert classifier.config.pad_token_id == tok.eos_token_id

    encoder = PairEncoder(tok, TextConfig(max_length=64))
    ids = encoder.encode([["q"], ["a longer question here"]], [["yes"], ["an answer"]], [["no"], ["another"]])
    width = max(map(len, ids))
    batch = torch.tensor([x + [tok.pad_token_id] * (width - len(x)) for x in ids])
    with torch.no_grad():
        batched = classifier(input_ids=batch, attention_mask=(batch != -1).long()).logits
        single = classifier(input_ids=torch.tensor([ids[0]])).logits
    assert batched.shape == (2, 3) and torch.isfinite(batched).all()
    # Right padding with pad = EOS: the head reads the same token with or without padding.
    torch.testing.assert_close(batched[0], single[0], atol=1e-5, rtol=1e-4)


def test_same_seed_same_weights(tokenizer):
    a = build_tiny_model("llama", tokenizer, SIZES, seed=3).state_dict()
    b = build_tiny_model("llama", tokenizer, SIZES, seed=3).state_dict()
    c = build_tiny_model("llama", tokenizer, SIZES, seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_tokenizer_round_trip(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    back = AutoTokenizer.from_pretrained(tmp_path)
    text = "Answer A: \u00e9t\u00e9 \U0001f600 code()"
    assert back(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert back.decode(back(text, add_special_tokens=False)["input_ids"]) == text
    assert back.padding_side == "right"


SMALL = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 64}
# bitsandbytes' CPU nf4 kernel (used where the CPU has AVX512-BF16) packs weights in blocks
# of 64 input features: k-bit tests need every projection at least that wide.
KBIT = {"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2, "intermediate_size": 128}


def saved_tiny(tokenizer, path, seed=0, sizes=SMALL):
    from arena_distill.modeling.models import build_tiny_model, save_model

    save_model(build_tiny_model("llama", tokenizer, sizes, seed=seed), tokenizer, path)
    return str(path)


def post_pretrained_adapter(tokenizer, tmp_path, lora):
    """A base and an adapter with every trainable tensor moved away from its init, as after training."""
    import torch

    from arena_distill.modeling.models import add_lora, load_model

    base = saved_tiny(tokenizer, tmp_path / "base")
    model = add_lora(load_model(base, pad_token_id=tokenizer.eos_token_id, seed=0), lora)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.normal_()
    model.save_pretrained(tmp_path / "adapter")
    return base, tmp_path / "adapter", model


LORA = {"r": 8, "alpha": 16, "modules_to_save": ["embed_tokens"]}


def test_a_fold_run_starts_from_the_post_pretrained_lora_without_its_head(tokenizer, tmp_path):
    """Every LoRA and extra-module tensor equals the post-pretrained adapter's; the head is fresh."""
    import torch
    from peft import get_peft_model_state_dict

    from arena_distill.modeling.models import add_lora, load_model

    base, adapter, trained = post_pretrained_adapter(tokenizer, tmp_path, LORA)
    fresh = add_lora(load_model(base, pad_token_id=tokenizer.eos_token_id, seed=7), LORA)
    started = add_lora(load_model(base, pad_token_id=tokenizer.eos_token_id, seed=7), LORA, init_adapter=adapter)
    saved, fresh_state, start_state = (get_peft_model_state_dict(m) for m in (trained, fresh, started))
    heads = [key for key in saved if ".score." in key]
    assert heads and len(saved) > len(heads) + 4
    for key in saved:
        expected = fresh_state[key] if key in heads else saved[key]
        assert torch.equal(start_state[key], expected), key
    assert not torch.equal(saved[heads[0]], start_state[heads[0]])


def test_an_initial_adapter_of_another_shape_is_refused(tokenizer, tmp_path):
    from arena_distill.errors import ConfigError
    from arena_distill.modeling.models import add_lora, load_model

    base, adapter, _ = post_pretrained_adapter(tokenizer, tmp_path, LORA)
    model = load_model(base, pad_token_id=tokenizer.eos_token_id, seed=0)
    with pytest.raises(ConfigError, match="r=8") as error:
        add_lora(model, {**LORA, "r": 4}, init_adapter=adapter)
    assert error.value.key == "lora.r"
    with pytest.raises(ConfigError, match="not a PEFT adapter"):
        add_lora(load_model(base, pad_token_id=tokenizer.eos_token_id, seed=0), LORA, init_adapter=tmp_path / "base")


def test_trainable_modules_keep_fp32_master_weights_on_a_bf16_base(tokenizer, tmp_path):
    """The head and extra modules train in fp32 (bf16 would round small Adam updates away)."""
    import torch

    from arena_distill.modeling.models import add_lora, load_model

    base = saved_tiny(tokenizer, tmp_path / "base")
    model = add_lora(load_model(base, pad_token_id=tokenizer.eos_token_id, seed=0, dtype=torch.bfloat16), LORA)
    trainable = {name: p.dtype for name, p in model.named_parameters() if p.requires_grad}
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    assert any("score" in name for name in trainable) and set(trainable.values()) == {torch.float32}
    assert frozen == {torch.bfloat16}


@pytest.mark.parametrize("bits, checkpointing", [(8, False), (4, True)])
def test_k_bit_base_trains_a_lora_adapter_on_cpu(tokenizer, tmp_path, bits, checkpointing):
    """QLoRA's path (bitsandbytes base + LoRA) runs a training step on CPU; its gradient
    checkpointing is the non-reentrant kind, as on a full-precision base."""
    import torch

    from arena_distill.modeling.models import add_lora, for_inference, load_model

    base = saved_tiny(tokenizer, tmp_path / "base", sizes=KBIT)
    model = load_model(base, pad_token_id=tokenizer.eos_token_id, seed=0, load_in_bits=bits)
    model = add_lora(model, {"r": 4, "alpha": 8}, gradient_checkpointing=checkpointing)
    checkpointed = [m._gradient_checkpointing_func for m in model.modules() if getattr(m, "gradient_checkpointing", False)]
    assert bool(checkpointed) == checkpointing
    assert all(func.keywords.get("use_reentrant") is False for func in checkpointed)
    assert model.config.use_cache is not checkpointing  # else every checkpointed job warns that it drops the cache
    model.train()
    ids = torch.tensor([tokenizer("one pair")["input_ids"], tokenizer("another pair")["input_ids"][:3]])
    loss = torch.nn.functional.cross_entropy(model(input_ids=ids).logits.float(), torch.tensor([0, 2]))
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if p.requires_grad and "lora_B" in n]
    assert grads and all(g is not None for g in grads)
    assert for_inference(model) is model  # a k-bit base is not merged for scoring


def test_a_soft_capped_model_runs_an_attention_that_applies_the_cap(tokenizer, tmp_path):
    """Gemma-2 soft-caps attention logits; SDPA cannot, and some releases drop the cap silently.

    The chosen implementation must give eager's logits, and the cap must change them.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from arena_distill.modeling.models import attention_implementation, build_tiny_model, load_model

    capped = build_tiny_model("gemma2", tokenizer, SMALL, seed=0)
    with torch.no_grad():  # attention logits of a few units, where a cap of 1 bites
        for layer in capped.model.layers:
            layer.self_attn.q_proj.weight.mul_(300)
    capped.config.attn_logit_softcapping = 1.0
    capped.save_pretrained(tmp_path / "capped")
    tokenizer.save_pretrained(tmp_path / "capped")
    uncapped = AutoModelForCausalLM.from_pretrained(tmp_path / "capped")
    uncapped.config.attn_logit_softcapping = None
    uncapped.save_pretrained(tmp_path / "uncapped")
    assert attention_implementation(tmp_path / "capped") == "eager"
    assert attention_implementation(saved_tiny(tokenizer, tmp_path / "llama")) == "sdpa"
    ids = torch.tensor([tokenizer("a question and two answers to compare")["input_ids"]])
    chosen, eager, no_cap = (
        load_model(tmp_path / name, pad_token_id=tokenizer.eos_token_id, seed=0, attn_implementation=impl).eval()
        for name, impl in (("capped", None), ("capped", "eager"), ("uncapped", "eager"))
    )
    with torch.no_grad():
        logits = [model(input_ids=ids).logits for model in (chosen, eager, no_cap)]
    assert chosen.config._attn_implementation == "eager"
    assert torch.equal(logits[0], logits[1]) and not torch.allclose(logits[0], logits[2], atol=1e-4)


def cut_in_half(path):
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])


def test_truncated_weights_are_named_by_whoever_loads_them(tokenizer, tmp_path):
    """A model or adapter whose safetensors file was cut short (a full disk, a partial copy)."""
    save_model(build_tiny_model("llama", tokenizer, SIZES, seed=0), tokenizer, tmp_path / "base")
    with_lora = add_lora(load_model(tmp_path / "base", pad_token_id=tokenizer.pad_token_id, seed=0), {"r": 4, "alpha": 8})
    with_lora.save_pretrained(tmp_path / "adapter")
    save_model(with_lora.merge_and_unload(), tokenizer, tmp_path / "classifier")
    for name in ("base/model.safetensors", "adapter/adapter_model.safetensors", "classifier/model.safetensors"):
        cut_in_half(tmp_path / name)
    loads = {
        "base": lambda: load_model(tmp_path / "base", pad_token_id=tokenizer.pad_token_id, seed=0),
        "adapter": lambda: load_adapter(build_tiny_model("llama", tokenizer, SIZES, seed=0), tmp_path / "adapter"),
        "classifier": lambda: load_classifier(tmp_path / "classifier"),
    }
    for directory, load in loads.items():
        with pytest.raises(
            DataError, match=rf"truncated or corrupted: delete it and rerun the rule that writes it \(file {tmp_path / directory}\)"
        ):
            load()
    with pytest.raises(DataError, match="truncated or corrupted"):
        read_adapter(tmp_path / "adapter")


@pytest.mark.parametrize("upcast", [True, False])
def test_a_k_bit_base_keeps_its_residual_stream_in_bf16_unless_upcast(tokenizer, tmp_path, upcast):
    """PEFT's QLoRA preparation casts the frozen embeddings and norms to fp32, and the residual
    stream follows; `kbit_upcast=False` keeps them in the base's bf16. Trainables are fp32 both ways."""
    import torch

    from arena_distill.modeling.models import add_lora, load_model

    base = saved_tiny(tokenizer, tmp_path / "base", sizes=KBIT)
    model = load_model(base, pad_token_id=tokenizer.eos_token_id, seed=0, dtype=torch.bfloat16, load_in_bits=4)
    model = add_lora(model, {"r": 4, "alpha": 8}, kbit_upcast=upcast)
    frozen = {name: param.dtype for name, param in model.named_parameters() if not param.requires_grad and param.is_floating_point()}
    assert any("embed_tokens" in name for name in frozen) and any("norm" in name for name in frozen)
    assert set(frozen.values()) == {torch.float32 if upcast else torch.bfloat16}
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    seen = []
    layer = model.get_base_model().model.layers[0]
    handle = layer.register_forward_hook(lambda module, args, output: seen.append(output[0] if isinstance(output, tuple) else output))
    ids = torch.tensor([tokenizer("one pair")["input_ids"]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(input_ids=ids).logits
    handle.remove()
    assert torch.isfinite(logits).all()
    assert seen[0].dtype == (torch.float32 if upcast else torch.bfloat16)
