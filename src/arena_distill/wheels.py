"""Wheels for an offline Python 3.12 machine (the GPU check's, a Kaggle notebook's), fetched where
PyPI is reachable. Standard library only: the workflow imports this when it starts, in the SLURM
driver's environment too."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

PYTHON_VERSION = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
PURE_SDISTS = (
    "gptqmodel==7.6.0",
    "defuser==0.0.28",
    "tokenicer==0.0.14",
    "logbar==0.4.15",
    "Device-SMI==0.5.7",
    "connection_pool==0.0.3",
)
"""Published as source distributions only, all pure Python (GPTQModel compiles its CUDA kernels
on first use): wheels built here by any Python 3 serve the GPU machine."""
NATIVE_SDISTS = ("pypcre==0.6.4",)
"""Source only, with a C extension (linked to the system's libpcre2-8, glibc >= 2.34): built
by a Python 3.12 interpreter here."""


def pip(python: str, *args: str) -> None:
    subprocess.run([python, "-m", "pip", "--disable-pip-version-check", "--quiet", *args], check=True)


def download(
    wheels: Path,
    python312: str,
    binaries: Sequence[str],
    pure_sdists: Sequence[str] = PURE_SDISTS,
    native_sdists: Sequence[str] = NATIVE_SDISTS,
) -> None:
    """Wheels for Python 3.12 on x86_64 Linux into `wheels`, without dependencies (the lists
    are complete): `binaries` as published, the source distributions built here."""
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    if binaries:
        pip(
            sys.executable,
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            PYTHON_VERSION,
            *platforms,
            "--dest",
            str(wheels),
            *binaries,
        )
    if pure_sdists:
        pip(sys.executable, "wheel", "--no-deps", "--wheel-dir", str(wheels), *pure_sdists)
    if native_sdists:
        pip(python312, "wheel", "--no-deps", "--wheel-dir", str(wheels), *native_sdists)
