"""The packages `make gpu-check` needs on a GPU machine that has no package registry.

Such a machine (Python 3.12, a CUDA build of torch, transformers, peft, accelerate, pandas,
pyarrow, scikit-learn and the common small packages) lacks Snakemake, GPTQModel, optimum and
bitsandbytes. This module, run where PyPI is reachable, downloads their wheels for Python 3.12
on x86_64 Linux and unpacks them into one folder that goes on `PYTHONPATH` there:

    python -m arena_distill.gpu.bundle .gpu-bundle

What is left out, and why:
- packages the GPU machine already has (torch and its stack, numpy, pandas, pyyaml, requests,
  jinja2, packaging, psutil, tqdm, safetensors, tokenizers, huggingface_hub): a second copy
  first on `PYTHONPATH` would shadow the installed one;
- the SLURM executor plugins: the check runs Snakemake with the local executor;
- PuLP (36 MB of solver binaries): the check schedules with `--scheduler greedy`, and Snakemake
  imports PuLP only for its ILP scheduler;
- GitPython: Snakemake imports it only for git-sourced code (nbformat it imports for every
  `script:`, so that stays);
- datasets and torchao: GPTQModel imports them only for calibration sets from the hub and FP4
  formats, neither of which the 8-bit export uses;
- every bitsandbytes library but the CUDA 13 one (torch on the GPU machine is a cu130 build):
  the wheel carries one per CUDA version, 125 MB in all.
The carried tree (bundle plus working tree) must stay under 64 MiB; the size is printed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

from arena_distill.wheels import download

CUDA_LIBRARY = "libbitsandbytes_cuda130.so"
CARRY_LIMIT = 64 * 2**20

SNAKEMAKE = (
    "snakemake==9.27.1",
    "snakemake-interface-common==1.23.0",
    "snakemake-interface-executor-plugins==9.4.0",
    "snakemake-interface-logger-plugins==2.1.0",
    "snakemake-interface-report-plugins==1.3.0",
    "snakemake-interface-scheduler-plugins==2.0.2",
    "snakemake-interface-storage-plugins==4.4.1",
    "ConfigArgParse==1.9.0",
    "docutils==0.22.4",
    "dpath==2.2.0",
    "humanfriendly==10.0",
    "immutables==0.21",
    "tabulate==0.10.0",
    "throttler==1.2.3",
    "wrapt==2.5.2",
    "yte==1.9.4",
    "argparse-dataclass==2.0.0",
    "conda-inject==1.3.2",
    "smart-open==7.7.1",
    "tenacity==9.2.1",
    "sqlmodel==0.0.37",
    "SQLAlchemy==2.0.58",
    "greenlet==3.5.6",
    "pydantic==2.14.3",
    "pydantic-core==2.50.4",
    "typing-inspection==0.4.5",
    "annotated-types==0.8.0",
    "jsonschema==4.26.0",
    "jsonschema-specifications==2025.9.1",
    "referencing==0.37.0",
    "rpds-py==2026.9.1",
    "attrs==26.1.0",
    "platformdirs==4.14.7",
    "nbformat==5.11.1",
    "fastjsonschema==2.22.3",
    "jupyter-core==5.9.1",
    "traitlets==5.16.1",
)
QUANTIZATION = (
    "optimum==2.3.0",
    "bitsandbytes==0.50.2",
)


def unpack(wheels: Path, target: Path) -> None:
    """Unpack each wheel into `target` as an installer would lay it out on `sys.path`."""
    for wheel in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(target)
    for data in target.glob("*.data"):
        for part in ("purelib", "platlib"):
            if (data / part).is_dir():
                shutil.copytree(data / part, target, dirs_exist_ok=True)
        shutil.rmtree(data)


def trim(target: Path) -> None:
    """Drop what the GPU machine never loads: other CUDA versions' bitsandbytes, caches."""
    for library in (target / "bitsandbytes").glob("libbitsandbytes_*"):
        if library.name != CUDA_LIBRARY:
            library.unlink()
    for cache in list(target.rglob("__pycache__")):
        shutil.rmtree(cache)


def size_of(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def working_tree_size(repo: Path) -> int:
    """Bytes of the files that travel with the working tree (tracked or not ignored)."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=repo,
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .split("\0")
    )
    return sum((repo / name).stat().st_size for name in listed if name and (repo / name).is_file())


def build(target: Path, python312: str) -> int:
    """A fresh bundle at `target`; returns its size in bytes."""
    shutil.rmtree(target, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        download(Path(tmp), python312, (*SNAKEMAKE, *QUANTIZATION))
        unpack(Path(tmp), target)
    trim(target)
    return size_of(target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path, nargs="?", default=Path(".gpu-bundle"))
    parser.add_argument("--python312", default="python3.12", help="a Python 3.12 interpreter, for the C extension")
    args = parser.parse_args(argv)
    bundle = build(args.target, args.python312)
    tree = working_tree_size(Path.cwd())
    mib = 2**20
    print(
        f"bundle {args.target}: {bundle / mib:.1f} MiB; with the working tree {(bundle + tree) / mib:.1f} MiB "
        f"(limit {CARRY_LIMIT / mib:.0f} MiB)"
    )
    return 0 if bundle + tree <= CARRY_LIMIT else 1


if __name__ == "__main__":
    raise SystemExit(main())
