"""The served model directory: the exported weights with the run's prediction settings and
fitted calibration.

`calibrate_submission` is fitted on the exported model's own scores, so the calibration
cannot be written by the rule that exports the weights; this last step joins them. The
prediction settings join here too, not at the export: a change of `predict` then repackages
the model in seconds instead of quantizing it again. The weights are hard links where the
file system allows (a 9B model is not copied twice), and `inference.json` gains the settings
and the calibration, so `arena-distill predict --model results/model` scores exactly as the
workflow's submission did. The input format travels too: `text.py` is copied in as
`pair_format.py` and `answer_features.py` beside it (standard library only), so a user with
`transformers` alone encodes pairs as the model was trained on them and applies any packaged
calibration (the card's snippet).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from arena_distill import INFERENCE_FILE
from arena_distill.data import answer_features, text
from arena_distill.io import SNAKEMAKE_TIMESTAMP, atomic_path

FORMAT_MODULE = "pair_format.py"
"""The input format's module (`arena_distill.data.text`, verbatim) in a served model directory."""
FEATURES_MODULE = "answer_features.py"
"""The `features` calibration's answer features (`arena_distill.data.answer_features`, verbatim)."""


def link_or_copy(source: str, target: str) -> None:
    """`shutil.copytree`'s copy function: a hard link, a copy across file systems."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def package_model(exported_dir: str | Path, out_dir: str | Path, calibration: Mapping[str, Any] | None, predict: Mapping[str, Any]) -> dict:
    """`exported_dir` with the `predict` settings and `calibration` (a `calibrate_submission`
    fit, None for none) saved in its `inference.json` (which holds the text budgets) and the
    format module beside them, written atomically to `out_dir`; returns the new inference
    settings."""
    exported_dir = Path(exported_dir)
    inference = json.loads((exported_dir / INFERENCE_FILE).read_text())
    inference["predict"] = dict(predict)
    # The fits compared with it on the same rows stay in calibration.json: they are not served.
    served = None if calibration is None or calibration.get("method") == "none" else dict(calibration)
    inference["calibration"] = served and {key: value for key, value in served.items() if key != "compared"}
    with atomic_path(out_dir, directory=True) as tmp:
        shutil.copytree(
            exported_dir,
            tmp,
            dirs_exist_ok=True,
            copy_function=link_or_copy,
            ignore=shutil.ignore_patterns(INFERENCE_FILE, SNAKEMAKE_TIMESTAMP),
        )
        (Path(tmp) / INFERENCE_FILE).write_text(json.dumps(inference, indent=1))
        shutil.copyfile(text.__file__, Path(tmp) / FORMAT_MODULE)
        shutil.copyfile(answer_features.__file__, Path(tmp) / FEATURES_MODULE)
    return inference
