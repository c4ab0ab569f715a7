"""The wheels a Kaggle notebook lacks to run the served model, and the wheelhouse they come from.

Standard library only: the workflow reads `IMAGE_LACKS` when it starts, in the SLURM driver's
environment too, which holds Snakemake and nothing of the model stack. `make kaggle-wheels`
fills the wheelhouse where PyPI is reachable:

    python -m arena_distill.export.kaggle_wheels .kaggle-wheels
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from arena_distill.errors import ConfigError
from arena_distill.wheels import NATIVE_SDISTS, PURE_SDISTS, download

KAGGLE_IMAGE = (
    "Kaggle/docker-python at 78aaa43 (2026-08-12): the Colab runtime release 20260514 with Kaggle's "
    "packages, Python 3.12, a CUDA build of torch, transformers >= 5, pandas, pyarrow, scikit-learn, scipy"
)
"""The Kaggle GPU image the bundle's wheel list was checked against (its Dockerfile and
kaggle_requirements.txt): what it has is not bundled, what it lacks is."""
IMAGE_LACKS = {
    "gptq": ("optimum==2.3.0", *PURE_SDISTS, *NATIVE_SDISTS),
    "bnb": ("bitsandbytes==0.50.2",),
    "none": (),
}
"""Per `quantize.method`, the pinned packages the image lacks to load the served model:
GPTQModel and its small pure-Python dependencies, optimum (transformers' GPTQ path), or
bitsandbytes. The versions are the project's lock's."""
KAGGLE_WHEELHOUSE = ".kaggle-wheels"


def normalized(name: str) -> str:
    """A distribution name as wheel file names spell it (PEP 503 and 427)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def find_wheels(wheelhouse: str | Path, requirements: Sequence[str]) -> list[Path]:
    """The wheel of each pinned `name==version` in `wheelhouse`; ConfigError naming every
    missing one and how to fetch them."""
    available = {(normalized(w.name.split("-")[0]), w.name.split("-")[1]): w for w in sorted(Path(wheelhouse).glob("*.whl"))}
    found, missing = [], []
    for requirement in requirements:
        name, version = requirement.split("==")
        wheel = available.get((normalized(name), version))
        (found if wheel else missing).append(wheel or requirement)
    if missing:
        raise ConfigError(
            f"the wheelhouse {wheelhouse} lacks {missing}: run `make kaggle-wheels` where PyPI is reachable "
            "(or list the wheels the image lacks in kaggle.wheels; [] for none)",
            key="kaggle.wheels",
        )
    return found


def required_wheels(kaggle: Mapping[str, Any], quantize_method: str) -> tuple[str, ...]:
    """`kaggle.wheels` when set, else what the image lacks for the model's quantization."""
    return tuple(kaggle["wheels"]) if kaggle.get("wheels") is not None else IMAGE_LACKS[quantize_method]


def main(argv: list[str] | None = None) -> int:
    """Fill a wheelhouse with every wheel the image lacks, for Python 3.12 (needs PyPI once;
    a filled wheelhouse is left as it is)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("wheelhouse", type=Path, nargs="?", default=Path(KAGGLE_WHEELHOUSE))
    parser.add_argument("--python312", default="python3.12", help="a Python 3.12 interpreter, for the C extension")
    args = parser.parse_args(argv)
    args.wheelhouse.mkdir(parents=True, exist_ok=True)
    everything = list(dict.fromkeys(r for method in IMAGE_LACKS.values() for r in method))
    try:
        find_wheels(args.wheelhouse, everything)
    except ConfigError:
        sources = (*PURE_SDISTS, *NATIVE_SDISTS)
        download(args.wheelhouse, args.python312, [r for r in everything if r not in sources])
        find_wheels(args.wheelhouse, everything)
    print(f"{args.wheelhouse}: the {len(everything)} wheels the Kaggle image lacks ({', '.join(everything)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
