"""Rule merge_student: the averaged adapter merged into the student's base."""

import torch

from arena_distill.logs import script_logging
from arena_distill.student import merge_student

with script_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    merge_student(base=snakemake.params.base, adapter=snakemake.input.adapter, spec=snakemake.params.spec,
                  dtype=snakemake.params.dtype, out_model=snakemake.output[0])
