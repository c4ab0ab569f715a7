"""arena-distill: the 1st-place LMSYS Chatbot Arena pipeline as an importable library.

The Snakemake workflow calls these modules through thin scripts; everything here is
usable (and tested) without Snakemake.
"""

import os

__version__ = "0.1.0"

JOB_ENVIRONMENT = {
    # Variable-length batches fragment CUDA's caching allocator; expandable segments let
    # a ~70 GiB post-pretraining job reuse freed memory instead of failing on fragments.
    "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
    # GPTQModel downloads CUTLASS for its Hopper kernel on first use, with no timeout: a
    # compute node without internet would hang. Offline, it uses its other kernels.
    "GPTQMODEL_OFFLINE": "1",
}
"""Set for every process that imports the package (stages, scripts, torchrun workers),
before torch touches CUDA; a value the user exported wins."""
for _name, _value in JOB_ENVIRONMENT.items():
    os.environ.setdefault(_name, _value)

LABELS = ("winner_model_a", "winner_model_b", "winner_tie")
"""Class order of every label, logit and probability column: A wins, B wins, tie."""
