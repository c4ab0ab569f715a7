"""Comparison (c) of `make gpu-check`: whether a candidate attention (flex on the GPU) gives the
LoRA and head gradients and the logits eager gives, up to rounding, in fp32 and in bf16, on one
packed batch of real-length rows. A correctness check, not a speed measurement: its tolerances
and their reasons stay together here, apart from the timing code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from arena_distill.gpu.workload import PRESET_LORA, random_model, real_rows, set_attention
from arena_distill.modeling.models import add_lora
from arena_distill.modeling.packing import forward_logits, model_inputs

CHECK_LAYERS = 2
CHECK_VOCAB = 4096
FP32_TOLERANCE = 1e-3
BF16_ULP = 2.0**-8
"""The gradient check's limits (`gradient_verdict` says why)."""
SOFTCAP_SCALE = 4.0
"""Query and key weights x4, scores x16: a random init's scores (std 1.4 at gemma-2-9b's widths)
reach std 23, where the soft-cap's tanh(score / 50) bends them."""


def gradients(
    model: torch.nn.Module, batch: Mapping[str, torch.Tensor], labels: torch.Tensor, attn: str, bf16: bool
) -> dict[str, torch.Tensor]:
    """Logits (as "logits") and the gradient of every trainable tensor of one forward/backward pass."""
    set_attention(model, attn)
    device = labels.device
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = forward_logits(model, batch)
    F.cross_entropy(logits, labels, reduction="sum").backward()
    found = {name: p.grad.detach().float().clone() for name, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return {"logits": logits.detach().float(), **found}


def relative_errors(found: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor]) -> dict[str, float]:
    return {name: float((value - reference[name]).norm() / reference[name].norm().clamp_min(1e-30)) for name, value in found.items()}


def gradient_verdict(errors: Mapping[str, float], eager_errors: Mapping[str, float] | None) -> dict[str, Any]:
    """Whether a candidate's gradients and logits equal eager's up to rounding.

    fp32 (`eager_errors` None: the reference is eager itself): within `FP32_TOLERANCE` each.
    Both paths compute the same IEEE fp32 math (flex's dots run 'ieee' unless TF32 is switched
    on, which the project never does), differing in summation order and flex's exp2-based online
    softmax at ~1e-6 relative; 1e-3 leaves three orders of margin, while a leaked packed row, a
    lost soft-cap or a wrong GQA group is off by 1e-1 or more.

    bf16: both paths are measured against the fp32 eager gradient; each tensor's candidate error
    may be at most twice eager's own bf16 error plus one bf16 ulp (2^-8). bf16 keeps 8 bits, and
    where each path rounds differs (flex keeps its scores in fp32 inside the kernel), so a correct
    path lands near eager's error, not at zero; a structural error lands at order 1.
    """
    if eager_errors is None:
        over = {name: value for name, value in errors.items() if not value <= FP32_TOLERANCE}
        limit = f"{FP32_TOLERANCE:g} each"
    else:
        over = {name: value for name, value in errors.items() if not value <= 2 * eager_errors[name] + BF16_ULP}
        limit = "2 x eager's own error + 2^-8 each"
    worst = max(errors, key=errors.get)
    verdict = {
        "max_error": errors[worst],
        "worst": worst,
        "limit": limit,
        "passed": not over,
        "eager_max_error": None if eager_errors is None else max(eager_errors.values()),
    }
    if over:
        verdict["error"] = f"{len(over)} tensor(s) beyond {limit}, e.g. {next(iter(over))} at {over[next(iter(over))]:.2e}"
    return verdict


def gradient_check(
    device: torch.device,
    config: Mapping[str, Any],
    model_type: str,
    layers: int,
    max_length: int,
    tokens: int,
    candidate: str = "flex_attention",
    vocab: int = CHECK_VOCAB,
) -> dict[str, Any]:
    """(c) One packed batch of real-length rows through a `layers`-layer model with LoRA (every
    B matrix random, so every A gets a gradient; no dropout), eager in fp32 as the reference,
    then `candidate` in fp32 and, with the frozen weights cast to bf16 as the student trains,
    eager and `candidate` in bf16 under autocast. The query and key weights are scaled so the
    attention scores reach the soft-cap's bend (a random init's stay where tanh is linear and a
    dropped cap would go unseen)."""
    model = random_model(config, model_type, device, torch.float32, "eager", layers=layers, vocab=vocab)
    for name, param in model.named_parameters():
        if name.endswith(("q_proj.weight", "k_proj.weight")):
            param.data *= SOFTCAP_SCALE
    model = add_lora(model, {**PRESET_LORA, "dropout": 0.0})
    generator = torch.Generator().manual_seed(0)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            param.data = (0.02 * torch.randn(param.shape, generator=generator)).to(device)
    model.eval()
    rows, total = [], 0
    for row in real_rows(4 * tokens // max_length + 8, max_length, vocab, seed=5):
        if total + len(row) <= tokens:
            rows.append(row)
            total += len(row)
    batch = model_inputs(rows, 0, device, packed=True)
    labels = torch.arange(len(rows), device=device) % 3
    check: dict[str, Any] = {"layers": layers, "rows": len(rows), "tokens": total, "candidate": candidate, "dtypes": {}}
    reference = gradients(model, batch, labels, "eager", bf16=False)
    for dtype in ("float32", "bfloat16"):
        bf16 = dtype == "bfloat16"
        if bf16:
            for param in model.parameters():
                if not param.requires_grad:
                    param.data = param.data.to(torch.bfloat16)
        eager = relative_errors(gradients(model, batch, labels, "eager", bf16), reference) if bf16 else None
        try:
            errors = relative_errors(gradients(model, batch, labels, candidate, bf16), reference)
        except Exception as error:  # fp32 flex may lack a kernel at head_dim 256: recorded, and bf16 still decides
            check["dtypes"][dtype] = {"error": f"{type(error).__name__}: {str(error)[:200]}"}
            continue
        check["dtypes"][dtype] = gradient_verdict(errors, eager)
    found = check["dtypes"]
    # fp32 flex may be missing (an error entry); bf16 must be measured, and whatever was measured must pass.
    check["passed"] = "max_error" in found.get("bfloat16", {}) and all(v.get("passed", d == "float32") for d, v in found.items())
    return check
