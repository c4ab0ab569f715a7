"""Rule merge_student: the averaged adapter merged into the student's base (each member's,
for a fold ensemble)."""

import torch

from arena_distill.export.ensemble import map_members
from arena_distill.logs import script_logging
from arena_distill.student.distillation import merge_student

with script_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    map_members(
        snakemake.input.adapter,
        snakemake.output[0],
        lambda adapter, out: merge_student(
            base=snakemake.params.base, adapter=str(adapter), spec=snakemake.params.spec, dtype=snakemake.params.dtype, out_model=str(out)
        ),
    )
