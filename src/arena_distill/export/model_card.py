"""The model card (`README.md`) written into the exported model directory.

Hugging Face reads a model directory's README.md as its card: YAML front matter (licence,
base model, library), then prose. Ours says how the model was made (the run's recipe), how
it was quantized, how to score with it, and which licences apply: the base model's terms
travel with fine-tuned and quantized weights, and the bundled sample data is CC BY-NC 4.0.
The evaluation is written after the model exists, so the card points to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MODEL_LICENCES = {
    "gemma": ("gemma", "Gemma Terms of Use (https://ai.google.dev/gemma/terms)"),
    "llama": ("llama3", "Meta Llama 3 Community License (https://llama.meta.com/llama3/license/)"),
    "qwen": ("tongyi-qianwen", "Tongyi Qianwen License of Qwen2-72B (https://huggingface.co/Qwen/Qwen2-72B-Instruct/blob/main/LICENSE)"),
}
SAMPLE_DATA_LICENCE = "CC BY-NC 4.0 (AlpacaEval pairs) and the competition's data terms (arena rows): data/sample/README.md"


TRANSFORMERS_SNIPPET = """\
import json, sys
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

MODEL = "results/model"  # this directory
sys.path.insert(0, MODEL)
from answer_features import features_of_pair
from pair_format import PairEncoder, TextConfig, join_turns

settings = json.load(open(f"{MODEL}/inference.json"))
tokenizer = AutoTokenizer.from_pretrained(MODEL)
model = AutoModelForSequenceClassification.from_pretrained(
    MODEL, dtype=torch.float32, attn_implementation=settings["predict"].get("attn_implementation") or "eager").eval()
calibration = settings["calibration"] or {"ab_scale": 1.0, "tie_scale": 1.0, "tie_bias": 0.0}
scale = torch.tensor([calibration["ab_scale"], calibration["ab_scale"], calibration["tie_scale"]], dtype=torch.float64)
bias = torch.tensor([0.0, 0.0, calibration["tie_bias"]], dtype=torch.float64)
terms = calibration.get("terms")


def feature_offsets(prompt, a, b):
    \"\"\"What a `features` calibration adds to one order's calibrated logits (nothing for the others).\"\"\"
    if not terms:
        return torch.zeros(3, dtype=torch.float64)
    x, k = features_of_pair(join_turns(prompt), join_turns(a), join_turns(b)), len(terms["diff_weights"])
    apart = sum(w * d / s for w, d, s in zip(terms["diff_weights"], x[:k], terms["diff_scale"]))
    tie = sum(w * (v - m) / s for w, v, m, s in zip(terms["abs_weights"], x[k:2 * k], terms["abs_mean"], terms["abs_scale"]))
    tie += terms["prompt_weight"] * (x[-1] - terms["prompt_mean"]) / terms["prompt_scale"]
    return torch.tensor([apart, -apart, tie], dtype=torch.float64)


def probabilities(prompt, response_a, response_b):
    \"\"\"[P(A wins), P(B wins), P(tie)] of one pair (each field a string or a list of turns):
    every test length, both orders (the mirror mapped back), each calibrated, averaged.\"\"\"
    orders = [(response_a, response_b, [0, 1, 2]), (response_b, response_a, [1, 0, 2])]
    views = []
    for max_length in settings["predict"]["max_lengths"]:
        encoder = PairEncoder(tokenizer, TextConfig.of(settings["text"], max_length))
        for a, b, order in orders[: 2 if settings["predict"]["tta"] else 1]:
            with torch.no_grad():
                logits = model(input_ids=torch.tensor(encoder.encode([prompt], [a], [b]))).logits.double()
            calibrated = torch.log_softmax(logits, -1) * scale + bias + feature_offsets(prompt, a, b)
            views.append(torch.softmax(calibrated, -1)[0, order])
    return (sum(views) / len(views)).tolist()


print(probabilities("What is 2 + 2?", "4", "Five."))"""
"""The card's plain-`transformers` example; a test runs it against `arena-distill predict`."""


def model_licence(spec: str) -> tuple[str, str]:
    """(front-matter licence id, the terms in words) of a model spec (hub id, path or `tiny:<arch>`)."""
    if spec.startswith("tiny:"):
        return "apache-2.0", "none from a base model: random-init weights built by the workflow (the project's Apache-2.0)"
    lowered = spec.lower()
    for family, licence in MODEL_LICENCES.items():
        if family in lowered:
            return licence
    return "other", f"the terms of {spec} (not one this project knows: check its model card)"


def model_card(recipe: Mapping[str, Any], quantization: Mapping[str, Any]) -> str:
    """The card of an exported student. `recipe`: the run's `student`, `teachers` (name ->
    model spec), `folds`, `average`, `post_pretrain`, `data` (the train file) and `text`;
    `quantization`: what `quantize_model` did."""
    student = recipe["student"]
    licence_id, student_terms = model_licence(student)
    teachers = recipe["teachers"]
    front = ["---", "library_name: transformers", "pipeline_tag: text-classification", f"license: {licence_id}"]
    if not student.startswith("tiny:"):
        front.append(f"base_model: {student}")
    front += ["tags: [arena-distill, lmsys-chatbot-arena, knowledge-distillation, gptq]", "---", ""]
    bits = quantization.get("bits")
    method = quantization.get("method", "none")
    quantized = (
        "not quantized"
        if method == "none"
        else f"{method.upper()} {bits}-bit"
        + (f", group size {quantization['group_size']}, {quantization['calibration_texts']} calibration texts" if method == "gptq" else "")
    )
    lines = [
        "# arena-distill student",
        "",
        "Predicts, for a prompt and two chatbot answers, P(A wins), P(B wins) and P(tie): a sequence",
        "classifier with three labels (`winner_model_a`, `winner_model_b`, `winner_tie`), the",
        "1st-place recipe of the LMSYS Chatbot Arena Human Preference Predictions competition.",
        "",
        "## How it was made",
        "",
        f"- student: `{student}`; teachers: " + ", ".join(f"`{name}` (`{spec}`)" for name, spec in teachers.items()),
        f"- post-pretraining on labelled pairs: {'yes' if recipe['post_pretrain'] else 'no'}; "
        f"{recipe['folds']} folds of `{recipe['data']}`",
        "- each fold's student distilled from every teacher's logits with LoRA, "
        + (
            "the folds' models kept apart as a fold ensemble (`ensemble`: one directory per fold, probabilities averaged at prediction)"
            if recipe["average"] == "ensemble"
            else f"the fold adapters averaged (`{recipe['average']}`) and merged"
        ),
        f"- quantization: {quantized} (`dtype` {quantization.get('dtype')})",
        f"- texts: at most {recipe['text']['train_max_length']} tokens in training, {recipe['text']['test_max_length']} at test",
        "",
        "## Use",
        "",
        "```bash",
        "arena-distill predict --model <this directory> --input pairs.csv --output predictions.csv",
        "```",
        "",
        "`inference.json` holds the scoring settings of the run (text budgets, lengths, A/B-swap",
        "TTA) and, in `results/model`, its fitted calibration (`calibration`, null without one),",
        "so the command writes the workflow's submission. The evaluation of the run that made",
        "this model is `results/eval/summary.md`.",
        "",
        "### With `transformers` alone",
        "",
        "The input format is `pair_format.py` beside the weights, the `features` calibration's answer",
        "features `answer_features.py` (both standard library only). This gives the command's",
        "probabilities, TTA and the packaged calibration included (a GPTQ model also needs `gptqmodel`",
        "and `optimum` installed; on a GPU pass `dtype=torch.bfloat16`, or `torch.float16` on a T4):",
        "",
        "```python",
        TRANSFORMERS_SNIPPET,
        "```",
        "",
        "## Licences",
        "",
        f"- these weights derive from `{student}`: {student_terms}",
        *[f"- teacher `{name}` (its logits taught the student): {model_licence(spec)[1]}" for name, spec in teachers.items()],
        f"- training data: `{recipe['data']}`"
        + (f"; the bundled sample is {SAMPLE_DATA_LICENCE}" if recipe["data"].startswith("data/sample/") else ""),
        "",
    ]
    return "\n".join(front + lines)
