"""The Kaggle bundle (`results/kaggle/`): what a competitor uploads as a Kaggle dataset to
submit where the competition scores, in a notebook without internet on two T4s.

    results/kaggle/
      model/        the served model (`results/model`: weights, inference.json, pair_format.py)
      wheels/       the project as a wheel, and the pinned wheels the Kaggle image lacks for it
      predict.py    python predict.py --input test.csv --output submission.csv
      README.md     the notebook cells, the time budget, what was checked
      bundle.json   the same facts for programs

`predict.py` is `arena-distill predict` on the bundled model with `--device cuda`: one worker
process per visible GPU (`prediction_workers`), the packaged TTA and calibration, the
command's named errors and exit codes, no partial output. On a T4 (sm_75) `auto` loads a GPTQ
model with the Triton kernel (`prediction.gptq_backend_for`) in fp16 (`models.resolve_dtype`).

The wheels the image lacks come from a wheelhouse that `make kaggle-wheels` fills where PyPI
is reachable (`arena_distill.export.kaggle_wheels`); a job never downloads.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from arena_distill.data.text import TextConfig, approximate_lengths
from arena_distill.export.kaggle_wheels import KAGGLE_IMAGE
from arena_distill.export.package_model import link_or_copy
from arena_distill.io import atomic_path
from arena_distill.modeling.flops import T4_PEAK, Shape

KAGGLE_TEST_PAIRS = 25_000
"""Pairs of the competition's hidden test set."""
KAGGLE_LIMIT_HOURS = 9.0
"""A Kaggle notebook's run-time limit."""
ASSUMED_UTILISATION = 0.25
"""The share of a T4's fp16 peak the time budget assumes a scoring run reaches: an assumption
(dequantizing 8-bit weights and short batches cost), not a measurement on a T4; the GPU
check projects the same test at the MFU it measures on an H100 (`gpu.projection.project`)."""

ENTRY_POINT = '''\
"""Score a test file of the LMSYS Chatbot Arena schema with the bundled model:

    python predict.py --input /kaggle/input/lmsys-chatbot-arena/test.csv --output submission.csv

One process per visible GPU, A/B-swap TTA and the packaged calibration, as `arena-distill
predict` (every option of that command is accepted; `--device cpu` scores without a GPU).
Needs the bundle's wheels installed first: pip install --no-index --no-deps wheels/*.whl
"""

import sys
from pathlib import Path

from arena_distill.cli import main

if __name__ == "__main__":
    sys.exit(main(["predict", "--model", str(Path(__file__).resolve().parent / "model"), "--device", "cuda", *sys.argv[1:]]))
'''


@dataclass(frozen=True)
class TimeBudget:
    """The estimated scoring time of the competition's test set on Kaggle's GPUs."""

    pairs: int
    tokens_per_pair: float
    views: int
    flops_per_token: float
    gpus: int
    utilisation: float
    hours: float

    def line(self) -> str:
        verdict = "fits" if self.hours <= KAGGLE_LIMIT_HOURS else "does NOT fit"
        took = f"{self.hours:.1f} h" if self.hours >= 0.1 else f"{self.hours * 3600:.2g} s"
        return (
            f"{self.pairs:,} pairs x {self.views} scorings x {self.tokens_per_pair:.0f} tokens on {self.gpus}xT4: "
            f"~{took} at {self.utilisation:.0%} of the fp16 peak ({verdict} in Kaggle's {KAGGLE_LIMIT_HOURS:g} h)"
        )


def time_budget(
    shape: Shape,
    tokens_per_pair: float,
    views: int,
    pairs: int = KAGGLE_TEST_PAIRS,
    gpus: int = 2,
    utilisation: float = ASSUMED_UTILISATION,
) -> TimeBudget:
    """Forward FLOPs (`modeling.flops.Shape.forward_flops`) of scoring `pairs` pairs `views` times
    (TTA, several lengths) at `tokens_per_pair` tokens, over `gpus` T4s at `utilisation` of
    their fp16 peak."""
    flops_per_token = shape.forward_flops(round(tokens_per_pair))
    total = flops_per_token * tokens_per_pair * views * pairs
    return TimeBudget(
        pairs, tokens_per_pair, views, flops_per_token, gpus, utilisation, total / (gpus * T4_PEAK * 1e12 * utilisation) / 3600
    )


def competition_budget(shape: Shape, rows: Any, text: Mapping[str, Any], predict: Mapping[str, Any]) -> TimeBudget:
    """`time_budget` of the run's prediction settings: tokens per pair measured on `rows` (a pair
    table of the competition's distribution, without a tokenizer) at each test length, one
    scoring per length and order (`predict.tta`)."""
    lengths = [sum(approximate_lengths(rows, TextConfig.of(text, n))) / len(rows) for n in predict["max_lengths"]]
    return time_budget(shape, sum(lengths) / len(lengths), len(lengths) * (2 if predict["tta"] else 1))


def build_project_wheel(root: str | Path, sources: Sequence[str | Path], dest: Path) -> Path:
    """The project's wheel, built offline from `pyproject.toml`, `README.md` and the package
    `sources` under `root`, in a scratch copy (no build folders in the workflow)."""
    root = Path(root)
    with tempfile.TemporaryDirectory() as tmp:
        for part in ["pyproject.toml", "README.md", *sources]:
            target = Path(tmp) / Path(part).resolve().relative_to(root.resolve())
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / part, target)
        command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index"]
        built = subprocess.run([*command, "--wheel-dir", str(dest), tmp], capture_output=True, text=True)
        if built.returncode != 0:
            raise RuntimeError(f"building the project's wheel failed: {built.stderr.strip()[-2000:]}")
    return next(dest.glob("arena_distill-*.whl"))


def bundle_readme(budget: TimeBudget, wheels: Sequence[str]) -> str:
    """The bundle's README: the notebook cells, the budget, the image checked against."""
    return "\n".join(
        [
            "# arena-distill Kaggle bundle",
            "",
            "Upload this folder as a Kaggle dataset, attach it and the competition's data to a notebook",
            "(GPU T4 x2, internet off), and run:",
            "",
            "```",
            "!pip install --no-index --no-deps /kaggle/input/<this dataset>/wheels/*.whl",
            "!python /kaggle/input/<this dataset>/predict.py --input /kaggle/input/lmsys-chatbot-arena/test.csv "
            "--output /kaggle/working/submission.csv",
            "```",
            "",
            "One process per GPU scores its share of the pairs; the output has the competition's columns",
            "and ids and is written only when every pair is scored. Exit status 2: bad input (the error",
            "names the file, row id and column), or no GPU visible (`--device cpu` scores on the CPU).",
            "",
            f"Time budget (from the model's architecture): {budget.line()}.",
            "",
            f"Wheels: {', '.join(wheels)}. Checked against {KAGGLE_IMAGE}.",
            "",
        ]
    )


def kaggle_bundle(model_dir: str | Path, out_dir: str | Path, wheels: Sequence[Path], budget: TimeBudget) -> dict[str, Any]:
    """Write the bundle to `out_dir` atomically (the model hard-linked where the file system
    allows); returns its manifest (`bundle.json`)."""
    names = [wheel.name for wheel in wheels]
    manifest = {"wheels": names, "kaggle_image": KAGGLE_IMAGE, "time_budget": asdict(budget)}
    with atomic_path(out_dir, directory=True) as tmp:
        tmp = Path(tmp)
        shutil.copytree(model_dir, tmp / "model", copy_function=link_or_copy, ignore=shutil.ignore_patterns(".snakemake_timestamp"))
        (tmp / "wheels").mkdir()
        for wheel in wheels:
            shutil.copy2(wheel, tmp / "wheels" / wheel.name)
        (tmp / "predict.py").write_text(ENTRY_POINT)
        (tmp / "README.md").write_text(bundle_readme(budget, names))
        (tmp / "bundle.json").write_text(json.dumps(manifest, indent=1))
    return manifest
