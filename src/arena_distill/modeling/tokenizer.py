"""A byte-level BPE tokenizer trained on the project's own texts, for the tiny models.

Real runs use the model's own tokenizer; the embedded default has no hub, so it trains one
on the training pairs. Byte-level BPE never meets an unknown character, and the result is a
`PreTrainedTokenizerFast` saved with `save_pretrained`, so downstream code loads it with
`AutoTokenizer.from_pretrained` exactly as it would a real one.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

BOS, EOS, UNK = "<s>", "</s>", "<unk>"


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `texts`; pad = EOS as in the original models' setup."""
    backend = Tokenizer(models.BPE(unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[BOS, EOS, UNK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=EOS,
        padding_side="right",
        model_max_length=1_000_000,
    )
