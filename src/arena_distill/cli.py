"""Command line: score pairs with a saved model, or plan the GPU memory of a run before it starts.

    arena-distill predict --model results/model --input pairs.csv --output preds.csv
    arena-distill plan --configfile config/presets/blackpearl.yaml --profile profiles/slurm
    arena-distill download --configfile config/presets/blackpearl.yaml   # on a login node: fetch, write the lock
    arena-distill verify --configfile config/presets/blackpearl.yaml     # the cache against the lock, every sha256

(`python -m arena_distill` is the same command.)
Input: the Kaggle test schema (`id, prompt, response_a, response_b`, fields as JSON lists
of turns), CSV or parquet. Output: the submission schema, CSV or parquet by suffix. The
settings (text budgets, max lengths, TTA) default to those the workflow exported with the
model (`inference.json` in the model directory); flags override them.

`plan` prints, per rule that loads a model, the estimated peak memory per GPU against the
GPUs the profile gives the rule (`arena_distill.workflow.capacity`), and exits 1 when one cannot fit.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from arena_distill import INFERENCE_FILE
from arena_distill.errors import ArenaDistillError, DownloadError

# Torch, transformers and GPTQModel load in the command that needs them, not before
# `--help` or an argument error (they take seconds and print banners).
EXAMPLE = """example:
  arena-distill predict --model results/model --input data/sample/test.csv --output predictions.csv

The model directory is one the workflow wrote (results/model); its inference.json gives the
text budgets, lengths, TTA and fitted calibration the workflow used, so the output is the
workflow's submission. Exit status 2: bad input or arguments."""


def add_configfiles(command: argparse.ArgumentParser) -> None:
    """`--configfile` of the commands that read a run's config, as snakemake takes it."""
    command.add_argument(
        "--configfile",
        nargs="+",
        action="extend",
        default=[],
        help="config files overlaid on config/config.yaml in order, as snakemake --configfile",
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="arena-distill",
        description="Score pairs with a saved model; plan a run's GPU memory.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser(
        "predict",
        help="score pairs: Kaggle test schema in, submission schema out",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    predict.add_argument("--model", required=True, help="model directory (results/model)")
    predict.add_argument("--input", required=True, help="pairs, .csv or .parquet")
    predict.add_argument("--output", required=True, help="predictions, .csv or .parquet")
    predict.add_argument("--max-length", type=int, nargs="+", help="token budget(s) per pair; several are averaged")
    predict.add_argument("--no-tta", action="store_true", help="score the given order only (no A/B-swap averaging)")
    predict.add_argument("--max-tokens", type=int, help="token budget of a scoring batch")
    predict.add_argument("--prompt-words", type=int)
    predict.add_argument("--response-words", type=int)
    predict.add_argument("--prompt-tokens", type=int)
    predict.add_argument(
        "--dtype",
        choices=["auto", "bfloat16", "float16", "float32"],
        help="scoring precision (auto: bf16 on GPUs with it, fp16 on a T4, fp32 on CPU)",
    )
    predict.add_argument("--gptq-backend", help="GPTQModel kernel for a GPTQ model, e.g. gptq_marlin, gptq_triton (default: auto)")
    predict.add_argument(
        "--calibration",
        help="a calibration.json to apply instead of the one packaged with the model "
        "(results/calibration/calibration.json of another run's fit)",
    )
    predict.add_argument("--bad-json", choices=["repair", "error"], default="repair", help="what a field that is not valid JSON becomes")
    predict.add_argument(
        "--device",
        choices=["auto", "cuda", "cpu"],
        default="auto",
        help="where to score: cuda needs a visible GPU, auto takes one when there is one (default: auto)",
    )
    predict.add_argument(
        "--workers",
        type=int,
        help="processes scoring shares of the pairs, one per GPU (default: every visible GPU with --device cuda, else 1)",
    )
    plan = commands.add_parser("plan", help="estimated peak GPU memory per rule of a run, against the profile's GPUs")
    add_configfiles(plan)
    plan.add_argument("--profile", default="profiles/slurm", help="Snakemake profile whose set-resources give each rule its GPUs")
    plan.add_argument("--gpu-memory-gib", type=float, default=80.0, help="memory of one GPU")
    download = commands.add_parser(
        "download",
        help="fetch the run's hub models into the Hugging Face cache (HF_HOME), "
        "with HF_TOKEN for gated ones: on a login node, before the jobs run offline",
    )
    add_configfiles(download)
    download.add_argument("--dry-run", action="store_true", help="list the models and fetch nothing")
    verify = commands.add_parser("verify", help="check the cached hub models of a run against its lock, every file's sha256")
    add_configfiles(verify)
    return parser.parse_args(argv)


DEFAULTS = {
    "text": {"prompt_words": 256, "response_words": 700, "prompt_tokens": 256},
    "predict": {"max_lengths": [2000], "tta": True, "max_tokens": 65536, "dtype": "auto", "gptq_backend": "auto"},
}
"""The original's test settings, for a model directory without `inference.json`."""


def model_settings(model_dir: str) -> tuple[dict, dict]:
    """(text, predict) settings saved with the model, else the defaults."""
    path = Path(model_dir) / INFERENCE_FILE
    saved = json.loads(path.read_text()) if path.is_file() else {}
    return {**DEFAULTS["text"], **saved.get("text", {})}, {**DEFAULTS["predict"], **saved.get("predict", {})}


def predict(args: argparse.Namespace) -> None:
    import torch

    from arena_distill.data.tables import prepare_test
    from arena_distill.export.ensemble import members
    from arena_distill.serving.prediction import read_calibration, saved_calibration
    from arena_distill.serving.prediction_workers import predict_on_workers, worker_devices
    from arena_distill.serving.submission import check_output_path, check_submission, write_table

    devices = worker_devices(args.device, args.workers, torch.cuda.device_count())
    if not (members(args.model)[0] / "config.json").is_file():
        raise FileNotFoundError(
            f"--model {args.model} is not a model directory (no config.json); the command line reads local models only, e.g. results/model"
        )
    check_output_path(args.output)
    rows = prepare_test(args.input, bad_json=args.bad_json)
    text, settings = model_settings(args.model)
    overrides = {"prompt_words": args.prompt_words, "response_words": args.response_words, "prompt_tokens": args.prompt_tokens}
    text.update({k: v for k, v in overrides.items() if v is not None})
    if args.max_length:
        settings["max_lengths"] = args.max_length
    if args.max_tokens:
        settings["max_tokens"] = args.max_tokens
    if args.dtype:
        settings["dtype"] = args.dtype
    if args.gptq_backend:
        settings["gptq_backend"] = args.gptq_backend
    settings["tta"] = settings.get("tta", True) and not args.no_tta
    calibration = read_calibration(args.calibration) if args.calibration else saved_calibration(args.model)
    predictions = predict_on_workers(args.model, rows, text, settings, calibration, devices)
    check_submission(predictions, rows["id"].tolist(), args.input)
    write_table(predictions, args.output)
    logging.getLogger("arena_distill").info("wrote %d predictions to %s", len(predictions), args.output)


def plan(args: argparse.Namespace) -> int:
    """Print the capacity plan; 1 when a rule cannot fit, naming it."""
    from arena_distill.workflow.capacity import plan as capacity_plan
    from arena_distill.workflow.capacity import table
    from arena_distill.workflow.config import effective_config  # needs snakemake, which `predict` does not

    estimates = capacity_plan(effective_config(args.configfile), args.profile, args.gpu_memory_gib)
    print(table(estimates))
    too_large = [estimate for estimate in estimates if estimate.verdict == "OOM"]
    for estimate in too_large:
        where = "per GPU" if estimate.gpus else "of host RAM"
        print(
            f"OOM: {estimate.rule} ({estimate.model}) needs ~{estimate.total_gib:.1f} GiB {where}, "
            f"the limit is {estimate.limit_gib:.0f} GiB",
            file=sys.stderr,
        )
    return 1 if too_large else 0


def download(args: argparse.Namespace) -> int:
    """List the run's hub models and, unless --dry-run, fetch them into the cache."""
    from arena_distill.modeling.model_lock import write_lock
    from arena_distill.workflow.config import effective_config
    from arena_distill.workflow.download import download_models, hub_models, pinned_revisions

    config = effective_config(args.configfile)
    models = hub_models(config)
    for key, repo in models.items():
        print(f"{key}: {repo}")
    if not models:
        print("nothing to download: every model is tiny: or a local directory")
    if models and not args.dry_run:
        try:
            entries = download_models(models, token=os.environ.get("HF_TOKEN"), revisions=pinned_revisions(config))
        except Exception as error:  # the hub client's errors (network, gated, missing) share no base class
            raise DownloadError(
                f"{type(error).__name__}: {error} (a gated model needs HF_TOKEN and its licence "
                "accepted on the hub; this command needs the network)"
            ) from error
        write_lock(config["models_lock"], entries)
        for repo, entry in entries.items():
            print(f"locked {repo} at {entry['revision']} ({len(entry['files'])} files)")
        home = os.environ.get("HF_HOME", "~/.cache/huggingface")
        print(f"fetched {len(entries)} models into {home}: give the jobs the same HF_HOME; commit {config['models_lock']}")
    return 0


def verify(args: argparse.Namespace) -> int:
    """Check every hub model of the run in the cache against the lock, every file's sha256."""
    from arena_distill.modeling.model_lock import read_lock, verify_snapshot
    from arena_distill.workflow.config import effective_config
    from arena_distill.workflow.download import check_models_locked, hub_models

    config = effective_config(args.configfile)
    check_models_locked(config, " ".join(map(str, args.configfile)))
    lock = read_lock(config["models_lock"])
    for repo in hub_models(config).values():
        snapshot = verify_snapshot(repo, lock[repo], full=True)
        print(f"{repo} {lock[repo]['revision']}: {len(lock[repo]['files'])} files as locked ({snapshot})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "plan":
            return plan(args)
        if args.command == "download":
            return download(args)
        if args.command == "verify":
            return verify(args)
        predict(args)
    except (ArenaDistillError, FileNotFoundError, ValueError) as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    return 0
