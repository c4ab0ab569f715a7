"""From fold adapters to the exported model: averaging, merging, quantizing."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

from arena_distill import LABELS
from arena_distill.data.tables import prepare_test
from arena_distill.errors import ConfigError
from arena_distill.export.ensemble import copy_members, map_members, members
from arena_distill.export.package_model import package_model
from arena_distill.export.quantize import quantize_model
from arena_distill.modeling.models import add_lora, build_tiny_model, load_model, resolve_dtype, save_model
from arena_distill.serving.prediction import load_classifier, predict_table
from arena_distill.student.adapters import average_adapters, best_fold_adapter
from arena_distill.student.distillation import calibration_texts, merge_student
from tests.conftest import SAMPLE

# GPTQ packs weights in blocks of 32: every projection needs a multiple of 32 outputs.
SIZES = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128}
LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "modules_to_save": ["embed_tokens"]}


@pytest.fixture(scope="module")
def base(tokenizer, tmp_path_factory):
    path = tmp_path_factory.mktemp("base") / "gemma2"
    save_model(build_tiny_model("gemma2", tokenizer, SIZES, seed=0), tokenizer, path)
    return str(path)


def fold_adapter(base, tokenizer, path, seed):
    """A LoRA classifier with random (non-zero) A, B, head and embeddings, saved to `path`."""
    model = add_lora(load_model(base, pad_token_id=tokenizer.pad_token_id, seed=0), LORA)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)
    model.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def folds(base, tokenizer, tmp_path_factory):
    root = tmp_path_factory.mktemp("folds")
    return [fold_adapter(base, tokenizer, root / f"fold{i}", seed=i) for i in range(3)]


def logits_of(model, tokenizer, texts=("a prompt and two answers", "another, longer prompt with its answers")):
    batch = tokenizer(list(texts), padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits.float()


def test_mean_is_the_element_wise_mean_of_every_tensor(folds, tmp_path):
    average_adapters(folds, tmp_path / "avg", method="mean")
    averaged = load_file(tmp_path / "avg/adapter_model.safetensors")
    tensors = [load_file(f"{f}/adapter_model.safetensors") for f in folds]
    assert set(averaged) == set(tensors[0]) and any("score" in k for k in averaged) and any("lora_A" in k for k in averaged)
    for name, value in averaged.items():
        assert torch.allclose(value, (tensors[0][name] + tensors[1][name] + tensors[2][name]) / 3, atol=1e-7), name
    assert json.loads((tmp_path / "avg/adapter_config.json").read_text())["r"] == LORA["r"]


def test_best_fold_is_the_lowest_loss_fold_unchanged(folds, tmp_path):
    summary = best_fold_adapter(folds, [0.71, 0.64, 0.69], tmp_path / "best")
    assert summary["fold"] == 1 and summary["adapters"] == [folds[1]]
    chosen, original = load_file(tmp_path / "best/adapter_model.safetensors"), load_file(f"{folds[1]}/adapter_model.safetensors")
    assert set(chosen) == set(original) and all(torch.equal(chosen[k], original[k]) for k in original)
    with pytest.raises(ValueError, match="3 adapters but 2 fold losses"):
        best_fold_adapter(folds, [0.7, 0.6], tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def merged_weights(base, tokenizer, adapter):
    model = load_model(base, pad_token_id=tokenizer.pad_token_id, seed=0)
    return {k: v.clone() for k, v in PeftModel.from_pretrained(model, adapter).merge_and_unload().state_dict().items()}


def test_mean_delta_merges_to_the_base_plus_the_mean_update(base, tokenizer, folds, tmp_path):
    average_adapters(folds, tmp_path / "delta", method="mean_delta")
    config = json.loads((tmp_path / "delta/adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"]) == (3 * LORA["r"], 3 * LORA["alpha"])
    plain = load_model(base, pad_token_id=tokenizer.pad_token_id, seed=0).state_dict()
    per_fold = [merged_weights(base, tokenizer, f) for f in folds]
    merged = merged_weights(base, tokenizer, str(tmp_path / "delta"))
    changed = 0
    for name, value in merged.items():
        mean_update = sum(fold[name] - plain[name] for fold in per_fold) / 3
        assert torch.allclose(value, plain[name] + mean_update, atol=1e-5), name
        changed += bool(mean_update.abs().max() > 1e-4)
    assert changed > 10  # projections of both layers, the head and the embeddings moved


def test_element_wise_mean_is_not_the_mean_update(base, tokenizer, folds, tmp_path):
    average_adapters(folds, tmp_path / "avg", method="mean")
    average_adapters(folds, tmp_path / "delta", method="mean_delta")
    name = next(k for k in merged_weights(base, tokenizer, folds[0]) if k.endswith("q_proj.weight"))
    mean, delta = (merged_weights(base, tokenizer, str(tmp_path / m))[name] for m in ("avg", "delta"))
    assert (mean - delta).abs().max() > 1e-4


def test_target_module_order_does_not_matter(folds, tmp_path):
    """peft writes `target_modules` from a set: each fold may list them in another order."""
    shuffled = tmp_path / "shuffled"
    shutil.copytree(folds[1], shuffled)
    config = json.loads((shuffled / "adapter_config.json").read_text())
    config["target_modules"] = sorted(config["target_modules"], reverse=True)
    (shuffled / "adapter_config.json").write_text(json.dumps(config))
    average_adapters([folds[0], str(shuffled)], tmp_path / "avg")
    assert (tmp_path / "avg/adapter_model.safetensors").exists()


def test_mismatched_adapters_are_refused_by_name(base, tokenizer, folds, tmp_path):
    other = tmp_path / "other"
    model = add_lora(load_model(base, pad_token_id=tokenizer.pad_token_id, seed=0), {**LORA, "r": 2})
    model.save_pretrained(other)
    with pytest.raises(ValueError, match=r"other: adapter_config.json key 'r'"):
        average_adapters([folds[0], str(other)], tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def merged(base, tokenizer, folds, tmp_path_factory):
    root = tmp_path_factory.mktemp("merged")
    average_adapters(folds, root / "avg")
    merge_student(base={"path": base}, adapter=str(root / "avg"), spec={"seed": 0}, dtype="auto", out_model=str(root / "model"))
    return root


def test_the_merge_runs_in_the_dtype_asked(base, tokenizer, folds, tmp_path):
    """fp16 as the original (keeps small updates bf16 rounds away); `auto` is fp32 on CPU."""
    average_adapters(folds, tmp_path / "avg")
    merge_student(base={"path": base}, adapter=str(tmp_path / "avg"), spec={"seed": 0}, dtype="float16", out_model=str(tmp_path / "fp16"))
    config = json.loads((tmp_path / "fp16/config.json").read_text())
    assert config["dtype"] == "float16"
    assert resolve_dtype("auto") == torch.float32 and resolve_dtype("bfloat16") == torch.bfloat16


def test_gptq_calibration_texts_come_from_the_fold_asked(base, tokenizer):
    table = pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "prompt": [[f"question {i}"] for i in range(1, 5)],
            "response_a": [["a"]] * 4,
            "response_b": [["b"]] * 4,
            "label": [0, 1, 2, 0],
        }
    )
    folds = {"folds": [{"fold": 0, "train_ids": [1, 2], "val_ids": [3, 4]}, {"fold": 1, "train_ids": [3, 4], "val_ids": [1, 2]}]}
    text = {"train_max_length": 64, "prompt_words": 256, "response_words": 700, "prompt_tokens": 16}
    one = calibration_texts(table, folds, base, text, n=8, seed=2023, fold=1)
    every = calibration_texts(table, folds, base, text, n=8, seed=2023)
    assert len(one) == 2 and all("question 3" in t or "question 4" in t for t in one)
    assert len(every) == 4


def test_merged_logits_equal_the_adapters(base, tokenizer, merged):
    adapter = PeftModel.from_pretrained(load_model(base, pad_token_id=tokenizer.pad_token_id, seed=0), merged / "avg")
    stock = AutoModelForSequenceClassification.from_pretrained(merged / "model")
    assert not (merged / "model/adapter_config.json").exists()
    assert (logits_of(stock, tokenizer) - logits_of(adapter, tokenizer)).abs().max() < 1e-4


@pytest.mark.parametrize("method, bits, tolerance", [("gptq", 8, 0.05), ("bnb", 8, 0.05), ("none", 8, 0.0)])
def test_quantized_model_reloads_with_stock_transformers(tokenizer, merged, tmp_path, method, bits, tolerance):
    texts = [f"calibration text number {i}: a prompt, answer A and answer B" for i in range(8)]
    recipe = {
        "student": "google/gemma-2-9b-it",
        "teachers": {"llama": "meta-llama/Meta-Llama-3-70B-Instruct"},
        "folds": 5,
        "average": "mean",
        "post_pretrain": True,
        "data": "data/sample/train.parquet",
        "text": {"train_max_length": 1024, "test_max_length": 2000},
    }
    quantize_model(
        merged / "model",
        tmp_path / "q",
        method=method,
        bits=bits,
        group_size=32,
        calibration_texts=texts,
        inference={"predict": {"tta": True}},
        recipe=recipe,
    )
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "q")
    full = AutoModelForSequenceClassification.from_pretrained(merged / "model")
    difference = (logits_of(reloaded, tokenizer) - logits_of(full, tokenizer)).abs().max().item()
    assert difference <= tolerance
    config = json.loads((tmp_path / "q/config.json").read_text())
    if method == "none":
        assert "quantization_config" not in config
    else:
        assert config["quantization_config"]["bits" if method == "gptq" else "load_in_8bit"] in (8, True)
        assert difference > 0  # the weights really changed
    assert json.loads((tmp_path / "q/inference.json").read_text()) == {"predict": {"tta": True}}
    card = (tmp_path / "q/README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers\n") and "license: gemma\nbase_model: google/gemma-2-9b-it\n" in card
    assert "Gemma Terms of Use" in card and "Meta Llama 3 Community License" in card and "CC BY-NC 4.0" in card
    assert ("not quantized" if method == "none" else f"{method.upper()} {bits}-bit") in card


def test_a_gptq_model_loads_with_the_kernel_asked(tokenizer, merged, tmp_path):
    texts = [f"calibration text number {i}: a prompt, answer A and answer B" for i in range(8)]
    quantize_model(merged / "model", tmp_path / "q", method="gptq", bits=8, group_size=32, calibration_texts=texts)

    def kernels(backend: str) -> set[str]:
        model, _ = load_classifier(tmp_path / "q", gptq_backend=backend)
        return {type(m).__name__ for m in model.modules() if type(m).__module__.startswith("gptqmodel.nn_modules.qlinear")}

    assert kernels("auto") == {"TorchLinear"}  # GPTQModel's choice on this CPU
    assert "TorchInt8Linear" in kernels("gptq_torch_int8")
    with pytest.raises(ValueError, match="TritonV2Linear.*does not support device: cpu"):
        kernels("gptq_triton")
    with pytest.raises(ConfigError, match="predict.gptq_backend"):
        kernels("fastest")


def test_the_model_card_names_each_base_models_licence():
    from arena_distill.export.model_card import model_licence

    assert model_licence("tiny:gemma2")[0] == "apache-2.0"
    assert model_licence("Qwen/Qwen2-72B-Instruct")[0] == "tongyi-qianwen"
    assert model_licence("/models/my-own")[0] == "other" and "check its model card" in model_licence("/models/my-own")[1]


def test_a_fold_ensemble_is_exported_member_by_member_and_predicts_their_mean(base, tokenizer, folds, tmp_path):
    """`average.method: ensemble`: the fold adapters kept apart, merged, GPTQ-quantized and
    packaged one by one in one directory; prediction averages the members' probabilities."""
    copy_members(folds[:2], tmp_path / "adapters")
    map_members(
        tmp_path / "adapters",
        tmp_path / "merged",
        lambda adapter, out: merge_student(base={"path": base}, adapter=str(adapter), spec={"seed": 0}, dtype="auto", out_model=str(out)),
    )
    text, settings = {"prompt_words": 64, "response_words": 64, "prompt_tokens": 32}, {"max_lengths": [96], "tta": True}
    recipe = {
        "student": "google/gemma-2-9b-it",
        "teachers": {"llama": "meta-llama/Meta-Llama-3-70B-Instruct"},
        "folds": 2,
        "average": "ensemble",
        "post_pretrain": True,
        "data": "data/sample/train.parquet",
        "text": {"train_max_length": 96, "test_max_length": 96},
    }
    texts = [f"calibration text number {i}: a prompt, answer A and answer B" for i in range(8)]
    map_members(
        tmp_path / "merged",
        tmp_path / "quantized",
        lambda model, out: quantize_model(
            model, out, method="gptq", bits=8, group_size=32, calibration_texts=texts, inference={"text": text}, recipe=recipe
        ),
    )
    package_model(tmp_path / "quantized", tmp_path / "model", None, settings)
    model = tmp_path / "model"
    assert members(model) == [model / "fold0", model / "fold1"]
    assert json.loads((model / "fold1/config.json").read_text())["quantization_config"]["bits"] == 8
    assert (
        json.loads((model / "inference.json").read_text())["predict"] == settings and "fold ensemble" in (model / "README.md").read_text()
    )
    rows = prepare_test(SAMPLE / "test.csv").head(6)
    ensemble = predict_table(model, rows, text, settings)[list(LABELS)].to_numpy()
    each = [predict_table(member, rows, text, settings)[list(LABELS)].to_numpy() for member in members(model)]
    assert np.abs(each[0] - each[1]).max() > 1e-3, "the members are different models"
    assert np.abs(ensemble - np.mean(each, axis=0)).max() < 1e-6
