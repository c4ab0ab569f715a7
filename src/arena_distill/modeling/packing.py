"""Model inputs of a batch of rows, padded or packed, and the classifier's logits of them.

A padded batch computes every row at the length of its longest row: on the arena's lengths,
two random rows of up to 1,024 tokens padded to the longer are 24 % padding (`make bench`). A packed batch
concatenates the rows into one sequence of exactly their tokens. What keeps the rows apart:

- `position_ids` restart at 0 on every row, so each row gets the rotary positions it has alone;
- no attention mask is passed and no KV cache is made (`use_cache=False`): transformers then
  reads the restarts as document boundaries and blocks attention across rows, for eager, SDPA,
  flex and flash attention alike (with a cache it would not, and the rows would leak);
- the 3-way head reads each row at the token the padded head reads: the rightmost token that
  is not the pad id. Pad = EOS and every row ends with EOS, so that is the token before it.

Per row this equals the padded forward pass up to float rounding, for logits and gradients
(tests/unit/test_packing.py). Under eager attention the packed sequence's score matrix is
square in the whole pack, so packing pays with flex or flash attention, which skip the
blocks across rows (the capacity plan counts a pack's eager scores).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from arena_distill.errors import ConfigError
from arena_distill.modeling.batching import pad_right
from arena_distill.modeling.models import classifier_parts

DOCUMENT_MASKING = ("eager", "sdpa", "flex_attention", "flash_attention_2")
"""Attention paths of transformers that mask across packed rows from restarting `position_ids`."""


def pooled_index(sequence: Sequence[int], pad_id: int) -> int:
    """Where the padded head reads `sequence`: its rightmost token that is not `pad_id` (0 if none)."""
    for index in range(len(sequence) - 1, -1, -1):
        if sequence[index] != pad_id:
            return index
    return 0


def pack_rows(sequences: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """One sequence of all rows: `input_ids` and `position_ids` (1 × total tokens) and
    `pool_index`, the position in the pack where the head reads each row."""
    lengths = [len(seq) for seq in sequences]
    starts = torch.tensor([0, *lengths[:-1]], dtype=torch.long).cumsum(0)
    return {
        "input_ids": torch.cat([torch.as_tensor(seq, dtype=torch.long) for seq in sequences])[None],
        "position_ids": torch.cat([torch.arange(length, dtype=torch.long) for length in lengths])[None],
        "pool_index": starts + torch.tensor([pooled_index(seq, pad_id) for seq in sequences], dtype=torch.long),
    }


def packed_logits(model: torch.nn.Module, input_ids: torch.Tensor, position_ids: torch.Tensor, pool_index: torch.Tensor) -> torch.Tensor:
    """The head's logits (rows × labels) of a pack built by `pack_rows`."""
    decoder, head = classifier_parts(model)
    attention = decoder.config._attn_implementation
    if attention not in DOCUMENT_MASKING:
        raise ConfigError(
            f"attention {attention!r} cannot keep packed rows apart; use one of {list(DOCUMENT_MASKING)}", key="attn_implementation"
        )
    hidden = decoder(input_ids=input_ids, position_ids=position_ids, use_cache=False).last_hidden_state
    return head(hidden[0, pool_index])


def model_inputs(
    sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device | str, packed: bool = False
) -> dict[str, torch.Tensor]:
    """The inputs `forward_logits` reads for `sequences`: right-padded rows with their mask,
    or one pack (`pack_rows`)."""
    if packed:
        inputs = pack_rows(sequences, pad_id)
    else:
        input_ids, attention_mask = pad_right(sequences, pad_id)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    return {name: tensor.to(device) for name, tensor in inputs.items()}


def forward_logits(model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Classifier logits (rows × labels, in the order of the batch's rows) in float32 (the
    head may run in bf16 under autocast), of a padded batch or of a pack."""
    if "pool_index" in batch:
        return packed_logits(model, batch["input_ids"], batch["position_ids"], batch["pool_index"]).float()
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
