"""FLOP counts of a decoder and MFU: pure arithmetic, no GPU (the GPU check's benchmarks, the
capacity of a Kaggle test).

The FLOP model counts what a step must compute, not what it happens to execute:

- forward, per token of a sequence of `context` tokens: 2 FLOPs per projection weight plus
  causal attention, whose QK^T and AV products over on average half the context come to
  2 * layers * context * (heads * head_dim); embeddings are lookups and the 3-way head is
  negligible;
- LoRA training, per token: the forward plus the backward pass to the inputs (2x forward
  for projections, 2x for attention); the frozen base needs no weight gradients and the
  LoRA matrices are under 3 % of the FLOPs. Recomputation under gradient checkpointing is
  not counted: it shows up as a lower MFU, which is the cost it has.

MFU = achieved FLOP/s over the GPU's dense bf16 (fp16 on a T4) peak. The benchmarks run rows
of the real arena lengths and credit each row's own FLOPs (`rows_flops`): a padded path
computes its padding too, and that is waste, not credit, so its MFU is lower by its padding
share. A projection divides the FLOPs of a stage by GPUs x peak x the MFU measured for the
path the preset runs (`measured_mfus`): where that path pads, its measured MFU already
carries the padding, and nothing is scaled twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),
    ("H200", 989.0),
    ("A100", 312.0),
    ("L4", 121.0),
    ("T4", 65.0),
)
"""Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, by a part of the device name; the
first match wins, so the PCIe and NVL variants come before the plain H100 (SXM)."""


H100_PEAK = 989.0


T4_PEAK = 65.0
"""T4 has no bf16: its fp16 tensor-core peak, what an fp16 model runs at on Kaggle."""


@dataclass(frozen=True)
class Shape:
    """The sizes of a decoder that its FLOPs depend on."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> "Shape":
        heads = config["num_attention_heads"]
        return cls(
            config["hidden_size"],
            config["num_hidden_layers"],
            heads,
            config.get("num_key_value_heads", heads),
            config.get("head_dim") or config["hidden_size"] // heads,
            config["intermediate_size"],
        )

    @property
    def projection_params(self) -> int:
        """q, k, v, o and the three MLP projections of every layer."""
        attention = 2 * self.hidden * self.heads * self.head_dim + 2 * self.hidden * self.kv_heads * self.head_dim
        return self.layers * (attention + 3 * self.hidden * self.intermediate)

    def attention_flops(self, context: int) -> float:
        """Causal attention FLOPs per token of a `context`-token sequence (forward)."""
        return 2.0 * self.layers * context * self.heads * self.head_dim

    def forward_flops(self, context: int) -> float:
        return 2.0 * self.projection_params + self.attention_flops(context)

    def lora_train_flops(self, context: int) -> float:
        return 4.0 * self.projection_params + 3.0 * self.attention_flops(context)


def peak_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a device by name; None for one not in the table."""
    for part, peak in PEAK_TFLOPS:
        if part.lower() in device_name.lower():
            return peak
    return None


def rows_flops(lengths: Iterable[int], per_token: Callable[[int], float]) -> float:
    """FLOPs of whole rows, each at its own length (`per_token` of a context, e.g.
    `Shape.forward_flops`): what a pass must compute for its real tokens, padding not counted."""
    return float(sum(int(length) * per_token(int(length)) for length in lengths))


def mfu(flops: float, seconds: float, peak: float | None) -> float | None:
    """MFU of `flops` done in `seconds` against `peak` TFLOP/s (None without a known peak)."""
    return None if peak is None else flops / seconds / (peak * 1e12)


def hours(flops: float, gpus: int, peak: float, utilisation: float) -> float:
    return flops / (gpus * peak * 1e12 * utilisation) / 3600.0
