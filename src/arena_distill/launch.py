"""Run a training stage in this process or, for several devices, under `torchrun`.

Snakemake's `script:` runs one Python process per job. A rule that holds several GPUs
(`gpu > 1` in the SLURM profile; `processes` forces a count, e.g. CPU processes in tests)
re-launches its stage through `python -m torch.distributed.run`, inside the same job and
SLURM task, so one job = one SLURM task however many devices it drives.

    python -m arena_distill.launch <stage> <kwargs.json> <log file>

is the worker entry point: it calls the stage function (`STAGES[<stage>](**kwargs)`).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from arena_distill.modeling.parallel import close_process_group
from arena_distill.student import distillation
from arena_distill.training import stages

STAGES = {"post_pretrain": stages.post_pretrain, "train_teacher": stages.train_teacher, "distill_student": distillation.distill_student}

log = logging.getLogger(__name__)


def process_count(resources: Mapping[str, Any]) -> int:
    """Processes for a job: the `processes` resource if set, else one per GPU, at least one.

    A job that was given GPUs but sees no CUDA fails here, at once: silently training a
    70B model on the CPU in fp32 would only end at the time limit.
    """
    gpus = int(resources.get("gpu") or 0)
    if gpus and not torch.cuda.is_available():
        raise RuntimeError(
            f"this job was given {gpus} GPU(s) but torch {torch.__version__} sees no CUDA device "
            f"(torch CUDA build: {torch.version.cuda or 'none, a CPU-only wheel'}; it needs a CUDA build of torch and an "
            f"NVIDIA driver that supports that CUDA version, visible in this job's step: check nvidia-smi there)"
        )
    processes = resources.get("processes") or gpus or 1
    return max(1, int(processes))


def run_stage(stage: str, kwargs: Mapping[str, Any], *, processes: int, threads: int, log_path: str) -> None:
    """Run `STAGES[stage](**kwargs)` here (one process) or under torchrun (several)."""
    if processes <= 1:
        torch.set_num_threads(max(1, threads))
        STAGES[stage](**kwargs)
        return
    with tempfile.TemporaryDirectory() as tmp:
        arguments = Path(tmp) / "kwargs.json"
        arguments.write_text(json.dumps(kwargs))
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={processes}",
            "-m",
            "arena_distill.launch",
            stage,
            str(arguments),
            log_path,
        ]
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, threads // processes))}
        log.info("launching %d processes: %s", processes, " ".join(command))
        completed = subprocess.run(command, env=env)
        if completed.returncode != 0:
            raise RuntimeError(
                f"torchrun for stage {stage} exited with {completed.returncode}; the workers' errors are above in {log_path}"
            )


def main(argv: list[str]) -> None:
    stage, arguments, log_path = argv
    rank = int(os.environ.get("RANK", "0"))
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if rank == 0:
        handlers.append(logging.FileHandler(log_path, mode="a"))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s %(levelname)s rank{rank} %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    try:
        STAGES[stage](**json.loads(Path(arguments).read_text()))
    except Exception:
        logging.getLogger("arena_distill").exception("rank %d failed", rank)
        raise
    finally:
        close_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
