"""The projection phase of `make gpu-check`: the preset's wall time per heavy stage from the
MFUs the benchmarks measured, as a table for the summary. The arithmetic is `projection`'s and
needs no GPU; this phase only picks the benchmark's numbers, merges the preset as Snakemake
does and reports, so that a missing Snakemake or a failed benchmark fails this phase alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from arena_distill.gpu import projection, tables
from arena_distill.gpu.harness import Result
from arena_distill.workflow.config import PRESET


def projection_phase(result: Result, bench: Mapping[str, Any] | None) -> None:
    if not bench or bench.get("peak_tflops") is None:
        raise RuntimeError("no benchmark MFU to project from (benchmarks failed, or the GPU's peak is not known)")
    from arena_distill.workflow.config import effective_config  # Snakemake's merge; a missing Snakemake fails this phase only

    preset = effective_config([PRESET])
    measured, sources = projection.measured_mfus(bench, preset)
    if all(value is None for value in measured.__dict__.values()):
        raise RuntimeError("no benchmark measured an MFU of a path the preset runs")
    stages = projection.project(preset, measured)
    result.data.update(measured=measured.__dict__, sources=sources, stages=[s.__dict__ for s in stages])
    result.lines += [
        "MFU used: " + "; ".join(f"{name} {source}" for name, source in sources.items()) + ". Each counts real tokens of "
        "real-length rows, so where a path pads, its padding is already in its MFU. Training stages on 8x H100 "
        f"(989 TFLOP/s each), L = {projection.TRAIN_TOKENS} tokens per row.",
        "",
        "| stage | jobs | hours per job | how |",
        "|---|---|---|---|",
    ]
    result.lines += [f"| {s.name} | {s.jobs} | {tables.fmt(s.hours, '.2f')} | {s.note} |" for s in stages]
