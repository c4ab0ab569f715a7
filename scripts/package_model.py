"""Rule package_model: the exported student, the prediction settings and the submission's fitted
calibration -> results/model."""

from arena_distill.export.package_model import package_model
from arena_distill.io import read_json
from arena_distill.logs import script_logging

with script_logging(snakemake.log[0]) as log:
    calibration = read_json(snakemake.input.calibration) if "calibration" in snakemake.input.keys() else None
    inference = package_model(snakemake.input.model, snakemake.output[0], calibration, snakemake.params.predict)
    log.info("packaged %s with calibration %s", snakemake.input.model, (inference["calibration"] or {}).get("method", "none"))
