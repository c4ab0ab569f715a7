"""What `make setup` installed: the torch build, and whether CUDA is usable with it.

    python -m arena_distill.gpu.cuda_report <build>     (build: cpu, cu130, cu126, ...)

Prints one line. For a CUDA build it exits 1 when torch is a CPU wheel (a local index offered
`+cpu` and pip preferred it) or sees no GPU (typically a driver older than the build needs):
a GPU node must never end up training on the CPU in silence.
"""

from __future__ import annotations

import sys

import torch


def report(build: str) -> tuple[str, bool]:
    """(the line to print, whether the venv is what `build` asked for)."""
    compiled = torch.version.cuda
    line = f"torch {torch.__version__} ({f'CUDA {compiled} build' if compiled else 'CPU build'})"
    if build == "cpu":
        return f"{line}; CUDA not asked for", True
    if not compiled:
        return f"{line}: asked for {build}, got a CPU wheel (a local index or find-links offers `+cpu`)", False
    if not torch.cuda.is_available():
        return (
            f"{line}: no usable GPU; CUDA {compiled} needs NVIDIA driver >= 580 for 13.x, >= 525 for 12.x "
            f"(see nvidia-smi), else rebuild with CUDA=cu126 or CUDA=cu128"
        ), False
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return f"{line}; CUDA usable: {len(names)} x {names[0]}, bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}", True


def main(argv: list[str]) -> int:
    line, ok = report(argv[0] if argv else "cpu")
    print(f"setup: {line}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
