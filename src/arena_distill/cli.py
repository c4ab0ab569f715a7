"""Command line: score pairs with a saved model.

    python -m arena_distill predict --model results/model --input pairs.csv --output preds.csv

Input: the Kaggle test schema (`id, prompt, response_a, response_b`, fields as JSON lists
of turns), CSV or parquet. Output: the submission schema, CSV or parquet by suffix. The
settings (max length, TTA) default to those the model was exported with in this workflow's
embedded config; pass them to match another run.
"""

from __future__ import annotations

import argparse
import logging
import sys

from arena_distill.data import prepare_test
from arena_distill.errors import ArenaDistillError
from arena_distill.prediction import check_submission, predict_table, write_table


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m arena_distill", description="Predict arena preferences with a saved model.")
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="score pairs: Kaggle test schema in, submission schema out")
    predict.add_argument("--model", required=True, help="model directory (results/model)")
    predict.add_argument("--input", required=True, help="pairs, .csv or .parquet")
    predict.add_argument("--output", required=True, help="predictions, .csv or .parquet")
    predict.add_argument("--max-length", type=int, nargs="+", default=[512], help="token budget(s) per pair; several are averaged")
    predict.add_argument("--no-tta", action="store_true", help="score the given order only (no A/B-swap averaging)")
    predict.add_argument("--max-tokens", type=int, default=16384, help="token budget of a scoring batch")
    predict.add_argument("--prompt-words", type=int, default=256)
    predict.add_argument("--response-words", type=int, default=700)
    predict.add_argument("--prompt-tokens", type=int, default=128)
    predict.add_argument("--bad-json", choices=["repair", "error"], default="repair", help="what a field that is not valid JSON becomes")
    return parser.parse_args(argv)


def predict(args: argparse.Namespace) -> None:
    rows = prepare_test(args.input, bad_json=args.bad_json)
    text = {"prompt_words": args.prompt_words, "response_words": args.response_words, "prompt_tokens": args.prompt_tokens}
    settings = {"max_lengths": args.max_length, "tta": not args.no_tta, "max_tokens": args.max_tokens}
    predictions = predict_table(args.model, rows, text, settings)
    check_submission(predictions, rows["id"].tolist(), args.input)
    write_table(predictions, args.output)
    logging.getLogger("arena_distill").info("wrote %d predictions to %s", len(predictions), args.output)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        predict(args)
    except (ArenaDistillError, FileNotFoundError, ValueError) as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    return 0
