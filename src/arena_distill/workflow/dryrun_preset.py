"""`make dryrun-preset`: the real run's DAG in a fresh clone, without the competition data.

    python -m arena_distill.workflow.dryrun_preset [snakemake arguments, e.g. --profile profiles/slurm submission]

A dry run reads no data file, but Snakemake and the start-up checks want every configured
input to exist. This copies the workflow to a temporary directory, puts an empty
placeholder at each data path of the preset that the copy lacks, says which, and runs
`snakemake -n --configfile config/presets/blackpearl.yaml` there with the given arguments.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from arena_distill.workflow.config import PRESET, WORKFLOW_DIR, copy_workflow, with_placeholder_data


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        workdir = copy_workflow(Path(tmp) / "workflow")
        for path in with_placeholder_data(workdir, [PRESET]):
            print(f"dryrun-preset: empty placeholder for {path}", flush=True)
        preset = str(PRESET.relative_to(WORKFLOW_DIR))
        snakemake = Path(sys.executable).parent / "snakemake"
        return subprocess.run([str(snakemake), *args, "-n", "--configfile", preset], cwd=workdir).returncode


if __name__ == "__main__":
    sys.exit(main())
