"""arena-distill: the 1st-place LMSYS Chatbot Arena pipeline as an importable library.

The Snakemake workflow calls these modules through thin scripts; everything here is
usable (and tested) without Snakemake.
"""

import logging
import os

__version__ = "0.1.0"

JOB_ENVIRONMENT = {
    # Variable-length batches fragment CUDA's caching allocator; expandable segments let
    # a ~70 GiB post-pretraining job reuse freed memory instead of failing on fragments.
    "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
    # GPTQModel downloads CUTLASS for its Hopper kernel on first use, with no timeout: a
    # compute node without internet would hang. Offline, it uses its other kernels.
    "GPTQMODEL_OFFLINE": "1",
    # No download unless asked: a model that is not on disk or in the Hugging Face cache fails
    # at once, instead of a mistyped local path being looked up on the hub (where a public repo
    # of that name would be fetched and run). HF_HUB_OFFLINE=0 lets a process download.
    "HF_HUB_OFFLINE": "1",
}
"""Set for every process that imports the package (stages, scripts, torchrun workers),
before torch touches CUDA; a value the user exported wins."""
for _name, _value in JOB_ENVIRONMENT.items():
    os.environ.setdefault(_name, _value)

LABELS = ("winner_model_a", "winner_model_b", "winner_tie")
"""Class order of every label, logit and probability column: A wins, B wins, tie."""

INFERENCE_FILE = "inference.json"
"""The scoring settings saved in a model directory beside its weights (text budgets,
lengths, TTA): the command line scores as the workflow did."""


UNACTIONABLE_WARNINGS = {
    # torchao (a GPTQModel dependency this project never calls) tries its CUDA kernels on import.
    "torchao": "Failed to load ",
    # bitsandbytes looks for an optional CPU kernel package from the hub.
    "bitsandbytes.backends.cpu.ops": "Failed to load CPU gemm_4bit_forward",
    # torchao registers enums torch already supports.
    "torch.utils._pytree": "is an Enum subclass and is now natively supported",
}
"""Warnings every job printed that no user can act on, by logger: kept out of the logs."""


def _drop_unactionable(logger: str, text: str) -> None:
    logging.getLogger(logger).addFilter(lambda record: text not in record.getMessage())


for _logger, _text in UNACTIONABLE_WARNINGS.items():
    _drop_unactionable(_logger, _text)
