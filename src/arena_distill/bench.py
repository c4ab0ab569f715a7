"""`make bench`: the embedded default's speed, each number a ratio against a baseline measured
in the same run, on the same tiny model and rows (these machines are shared and noisy, so an
absolute number alone says little).

    python -m arena_distill.bench [--out results/bench] [--steps 12] [--rows 160] [--threads 1]

- **training**: tokens/s of the project's loop (`training.train`) against a plain PyTorch loop
  of the same model, LoRA parametrization, batches and precision; then plain full fine-tuning
  and a small LoRA, so the cost of the default's parametrization is visible, with the loss
  each reaches after the same steps (what it learns per second); and the project's loop
  with its decoder layers compiled (`training.compile`).
- **prediction**: rows/s of `inference.predict_logits` (length-sorted, token-budgeted
  batches) against a per-row Hugging Face loop padded to the max length, with the largest
  probability difference and the share of scored tokens that are not padding.
- **workflow**: the time of `snakemake -n` for the preset, and the peak RSS of a
  `python -m arena_distill predict` run.
- **preset batches**: the share of real (not padding) tokens in the preset's training
  micro-batches on the lengths of the bundled real arena votes, padded as the original
  batches them and packed (`training.packing`); the same rows, split over the profile's GPUs.

Writes `summary.md` and `results.json` under `--out`.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import yaml
from scipy.special import softmax
from torch.utils.flop_counter import FlopCounterMode

from arena_distill.data.pairs import encode_rows, with_swaps
from arena_distill.data.tables import read_pairs
from arena_distill.data.text import PairEncoder, TextConfig, approximate_lengths, format_pair
from arena_distill.modeling.batching import length_grouped_batches, pad_right, token_budget_batches
from arena_distill.modeling.inference import predict_logits
from arena_distill.modeling.models import add_lora, build_tiny_model, compile_layers, load_model, save_model
from arena_distill.modeling.packing import model_inputs
from arena_distill.modeling.tokenizer import train_bpe_tokenizer
from arena_distill.training.loop import BATCH_PLANS, ClassificationTask, Examples, TrainConfig, micro_batches, train
from arena_distill.workflow.config import PRESET, WORKFLOW_DIR, copy_workflow, effective_config, rule_resources, with_placeholder_data

REPO = WORKFLOW_DIR
SAMPLE = REPO / "data" / "sample"


@dataclass(frozen=True)
class Setup:
    """The embedded default's llama teacher: its sizes, LoRA, text budget, batches and optimizer."""

    sizes: dict
    lora: dict
    max_length: int
    batch_size: int
    micro_batch_size: int
    learning_rate: float
    max_tokens: int
    """Token budget of a prediction batch (`predict.max_tokens`)."""

    @classmethod
    def from_config(cls, path: Path = REPO / "config" / "config.yaml") -> "Setup":
        config = yaml.safe_load(path.read_text())
        llama = config["teachers"]["llama"]
        training = config["training"]
        return cls(
            llama["tiny"],
            llama["lora"],
            config["text"]["train_max_length"],
            training["batch_size"],
            training["micro_batch_size"],
            llama["learning_rate"],
            config["predict"]["max_tokens"],
        )


@dataclass(frozen=True)
class Result:
    name: str
    value: float
    unit: str
    baseline: str = ""
    ratio: float | None = None
    note: str = ""


def tiny_base(setup: Setup, rows: pd.DataFrame, workdir: Path):
    """A tokenizer trained on the rows and the default's random-init llama, saved as a base."""
    texts = [format_pair(p, a, b) for p, a, b in zip(rows["prompt"], rows["response_a"], rows["response_b"])]
    tokenizer = train_bpe_tokenizer(texts, vocab_size=4000)
    save_model(build_tiny_model("llama", tokenizer, setup.sizes, seed=0), tokenizer, workdir / "base")
    return tokenizer, workdir / "base"


def classifier(base: Path, tokenizer, lora: dict | None):
    model = load_model(base, pad_token_id=tokenizer.pad_token_id, seed=0)
    return add_lora(model, lora) if lora is not None else model


def plain_loop(
    model, examples: Examples, batches: list[list[int]], pad_id: int, learning_rate: float, micro_batch_size: int
) -> tuple[float, int, float]:
    """The textbook loop: pad, forward, cross-entropy, backward (accumulated over micro-batches),
    clip, AdamW. (seconds, tokens, mean loss of the last batch)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=learning_rate)
    model.train()
    tokens, loss = 0, math.nan
    started = time.perf_counter()
    for rows in batches:
        loss = 0.0
        for start in range(0, len(rows), micro_batch_size):
            micro = rows[start : start + micro_batch_size]
            input_ids, attention_mask = pad_right([examples.ids[i] for i in micro], pad_id)
            labels = torch.as_tensor(examples.targets["label"][micro])
            logits = model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
            loss_value = F.cross_entropy(logits, labels, reduction="sum") / len(rows)
            loss_value.backward()
            tokens += int(attention_mask.sum())
            loss += float(loss_value)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - started, tokens, loss


def training_bench(setup: Setup, examples: Examples, base: Path, tokenizer, steps: int, workdir: Path) -> list[Result]:
    """The project's loop and the plain loop on the same batches, then other parametrizations."""
    pad = tokenizer.pad_token_id
    first = length_grouped_batches(examples.lengths, setup.batch_size, seed=0, epoch=0)[:steps]
    rows = sorted({i for batch in first for i in batch})
    subset = Examples([examples.ids[i] for i in rows], {"label": examples.targets["label"][rows]})
    # The project's loop plans these very batches from the subset (same planner, seed and epoch).
    batches = length_grouped_batches(subset.lengths, setup.batch_size, seed=0, epoch=0)
    micro = setup.micro_batch_size
    plain_loop(classifier(base, tokenizer, setup.lora), subset, batches[:1], pad, setup.learning_rate, micro)  # warm-up, untimed
    # name -> (LoRA, rows per forward pass)
    variants = {
        "default LoRA": (setup.lora, micro),
        "full fine-tuning": (None, micro),
        "LoRA r 64 with embeddings (full rank)": ({**setup.lora, "r": 64, "alpha": 128}, micro),
        "LoRA r 8 without embeddings": ({**setup.lora, "r": 8, "alpha": 16, "modules_to_save": []}, micro),
        f"default LoRA, the whole batch of {setup.batch_size} per pass": (setup.lora, setup.batch_size),
    }
    config = TrainConfig(
        learning_rate=setup.learning_rate,
        epochs=1,
        batch_size=setup.batch_size,
        micro_batch_size=micro,
        eval_every=10**6,
        warmup_ratio=0.0,
        seed=0,
    )
    val = Examples(subset.ids[: setup.batch_size], {"label": subset.targets["label"][: setup.batch_size]})
    # Two interleaved rounds, the faster of each kept: a busy core in one round does not decide the ratio.
    plain: dict[str, tuple[float, float]] = {}
    speed, project = 0.0, {}
    for round_ in range(2):
        for name, (lora, rows_per_pass) in variants.items():
            seconds, tokens, loss = plain_loop(classifier(base, tokenizer, lora), subset, batches, pad, setup.learning_rate, rows_per_pass)
            plain[name] = (max(tokens / seconds, plain.get(name, (0.0,))[0]), loss)
        project = train(
            classifier(base, tokenizer, setup.lora),
            ClassificationTask(),
            subset,
            val,
            config,
            pad_id=pad,
            checkpoint_dir=workdir / f"checkpoints{round_}",
            fingerprint="bench",
        ).metrics
        speed = max(speed, project["tokens"] / project["train_seconds"])
    baseline, (reference, _) = "plain loop, default LoRA", plain["default LoRA"]
    results = [
        Result(
            "training: project loop, default LoRA",
            speed,
            "tokens/s",
            baseline,
            speed / reference,
            f"{project['steps']} steps of {setup.batch_size} rows, {micro} per pass; loss {project['train_loss_last']:.3f}",
        ),
        compiled_training(base, tokenizer, setup, subset, val, config, workdir, speed),
    ]
    for name, (value, loss) in plain.items():
        results.append(
            Result(
                f"training: plain loop, {name}",
                value,
                "tokens/s",
                "" if name == "default LoRA" else baseline,
                None if name == "default LoRA" else value / reference,
                f"loss {loss:.3f} after the same steps",
            )
        )
    return results


def compiled_training(
    base: Path, tokenizer, setup: Setup, subset: Examples, val: Examples, config: TrainConfig, workdir: Path, eager_speed: float
) -> Result:
    """The project loop with its decoder layers compiled (`training.compile`), against the
    eager loop: a first run compiles every batch shape it meets, a second on the same model
    gives the compiled speed."""
    model = classifier(base, tokenizer, setup.lora)
    compile_layers(model)
    runs = [
        train(
            model,
            ClassificationTask(),
            subset,
            val,
            config,
            pad_id=tokenizer.pad_token_id,
            checkpoint_dir=workdir / f"compiled{i}",
            fingerprint="bench",
        ).metrics
        for i in range(2)
    ]
    speed = runs[1]["tokens"] / runs[1]["train_seconds"]
    return Result(
        "training: project loop, decoder layers compiled",
        speed,
        "tokens/s",
        "project loop, default LoRA",
        speed / eager_speed,
        f"after a first run that compiled for {runs[0]['train_seconds']:.0f} s",
    )


def prediction_bench(examples: Examples, base: Path, tokenizer, setup: Setup, wide_budget: int = 16384) -> list[Result]:
    """`predict_logits` against one padded row at a time, at identical probabilities; and at
    the default's token budget against a `wide_budget` one."""
    model = classifier(base, tokenizer, None).eval()
    pad = tokenizer.pad_token_id
    max_tokens = setup.max_tokens

    def scored(budget: int) -> tuple[np.ndarray, float]:
        started = time.perf_counter()
        logits = predict_logits(model, examples.ids, pad_id=pad, max_tokens=budget)
        return logits, time.perf_counter() - started

    # Two interleaved rounds, the faster of each kept (as for training): neither budget runs cold.
    (wide, wide_1), (fast, fast_1), (_, wide_2), (_, fast_2) = [scored(b) for _ in range(2) for b in (wide_budget, max_tokens)]
    wide_seconds, fast_seconds = min(wide_1, wide_2), min(fast_1, fast_2)
    naive = np.zeros_like(fast)
    started = time.perf_counter()
    with torch.inference_mode():
        for i, ids in enumerate(examples.ids):
            padded = ids + [pad] * (setup.max_length - len(ids))
            mask = [1] * len(ids) + [0] * (setup.max_length - len(ids))
            naive[i] = model(input_ids=torch.tensor([padded]), attention_mask=torch.tensor([mask])).logits[0].float().numpy()
    naive_seconds = time.perf_counter() - started
    difference = float(np.abs(softmax(fast, axis=1) - softmax(naive, axis=1)).max())
    # bf16 autocast (AMX on recent Xeons): faster, but not at identical probabilities.
    started = time.perf_counter()
    half = predict_logits(model, examples.ids, pad_id=pad, max_tokens=max_tokens, bf16=True)
    half_seconds = time.perf_counter() - started
    half_difference = float(np.abs(softmax(fast, axis=1) - softmax(half, axis=1)).max())
    lengths = examples.lengths
    batches = token_budget_batches(lengths, max_tokens)
    scored = sum(len(batch) * lengths[batch].max() for batch in batches)
    rows = len(examples)
    achieved = sum(forward_flops(model, [examples.ids[i] for i in batch], pad) for batch in batches) / fast_seconds / 1e9
    ceiling = matmul_gflops(max_tokens, setup.sizes["hidden_size"], setup.sizes["intermediate_size"])
    wide_difference = float(np.abs(softmax(fast, axis=1) - softmax(wide, axis=1)).max())
    return [
        Result(
            "prediction: predict_logits",
            rows / fast_seconds,
            "rows/s",
            "per-row loop padded to the max length",
            naive_seconds / fast_seconds,
            f"{max_tokens:,}-token batches; max |probability difference| {difference:.1e}",
        ),
        Result(
            f"prediction: predict_logits, {wide_budget:,}-token batches",
            rows / wide_seconds,
            "rows/s",
            "predict_logits",
            wide_seconds / fast_seconds,
            f"ratio: the default's budget against this one; max |probability difference| {wide_difference:.1e}",
        ),
        Result("prediction: per-row loop padded to the max length", rows / naive_seconds, "rows/s"),
        Result(
            "prediction: predict_logits in bf16 autocast",
            rows / half_seconds,
            "rows/s",
            "per-row loop padded to the max length",
            naive_seconds / half_seconds,
            f"max |probability difference| to float32 {half_difference:.1e}",
        ),
        Result(
            "prediction: non-pad share of the scored tokens",
            float(lengths.sum() / scored),
            "share",
            note=f"{rows} rows, mean {lengths.mean():.0f} tokens, cap {setup.max_length}",
        ),
        Result(
            "prediction: predict_logits compute",
            achieved,
            "GFLOP/s",
            "one bare matmul of the model's MLP shape",
            achieved / ceiling,
            f"the matmul: {ceiling:.0f} GFLOP/s; what batching can still gain",
        ),
    ]


def forward_flops(model, ids: list[list[int]], pad_id: int) -> float:
    """FLOPs of one padded forward pass of these rows, counted by torch's FLOP counter."""
    input_ids, attention_mask = pad_right(ids, pad_id)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(input_ids=input_ids, attention_mask=attention_mask)
    return float(counter.get_total_flops())


def matmul_gflops(rows: int, hidden: int, inner: int, repeats: int = 20) -> float:
    """GFLOP/s of this machine on the largest matmul a scoring batch does: (rows × hidden) @
    (hidden × inner), best of `repeats` — the most a model of these sizes can get from batching."""
    a, b = torch.randn(rows, hidden), torch.randn(hidden, inner)
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * rows * hidden * inner / best / 1e9


def arena_lengths(text: dict, max_length: int) -> np.ndarray:
    """Token lengths (approximate: `text.approximate_length`) of the bundled real arena votes
    in both A/B orders, at the `text` block's word cuts and `max_length`."""
    rows, _ = read_pairs(SAMPLE / "arena_calibration.parquet", with_labels=True)
    return np.array(approximate_lengths(rows, TextConfig.of(text, max_length)) * 2, dtype=np.int64)  # a mirror has its pair's length


def real_token_share(lengths: np.ndarray, config: TrainConfig, processes: int, epochs: int = 3) -> tuple[float, int]:
    """(real tokens / tokens computed, forward passes) of the training loop's micro-batches over
    `epochs` of the batch plan: each global batch split over `processes` as the loop splits it,
    and each micro-batch built by the loop's own `model_inputs`."""
    real = computed = passes = 0
    for epoch in range(epochs):
        for global_rows in BATCH_PLANS[config.batching](lengths, config.batch_size, config.seed, epoch):
            for rank in range(processes):
                for micro in micro_batches(global_rows[rank::processes], lengths, config):
                    inputs = model_inputs([[1] * int(lengths[i]) for i in micro], pad_id=0, device="cpu", packed=config.packing)
                    real += int(lengths[micro].sum())
                    computed += inputs["input_ids"].numel()
                    passes += 1
    return real / computed, passes


def preset_batch_shares() -> list[Result]:
    """The preset's training micro-batches for the student on the real arena lengths: padded
    (its micro-batch of rows, the original's random batches) against packed."""
    preset = effective_config([PRESET])
    training = {**preset["training"], **preset["student"].get("training", {})}
    lengths = arena_lengths(preset["text"], preset["text"]["train_max_length"])
    processes = int(rule_resources(REPO / "profiles" / "slurm", "distill_student").get("gpu", 1))
    keys = ("batch_size", "micro_batch_size", "micro_batch_tokens", "batching")
    shares = {}
    for packing in (False, True):
        config = TrainConfig(learning_rate=1.0, packing=packing, **{key: training[key] for key in keys})
        shares[packing] = real_token_share(lengths, config, processes)
    (padded, padded_passes), (packed, packed_passes) = shares[False], shares[True]
    where = (
        f"{len(lengths):,} rows (real arena votes, both orders, mean {lengths.mean():.0f} tokens, "
        f"{(lengths == lengths.max()).mean():.0%} at the cap), {training['batch_size']} per step over {processes} GPUs"
    )
    return [
        Result(
            "training: real-token share of the preset's micro-batches, padded",
            padded,
            "share",
            note=f"{training['micro_batch_size']} rows per pass, {training['batching']} batches; {padded_passes:,} passes; {where}",
        ),
        Result(
            "training: real-token share of the preset's micro-batches, packed",
            packed,
            "share",
            "padded",
            packed / padded,
            f"the student's packs of at most {training['micro_batch_tokens']:,} tokens; {packed_passes:,} passes",
        ),
    ]


def preset_dry_run_seconds(workdir: Path) -> float:
    """`snakemake -n` of the preset on a copy of the workflow with placeholder data files."""
    copy = copy_workflow(workdir / "workflow")
    with_placeholder_data(copy, [PRESET])
    snakemake = Path(sys.executable).parent / "snakemake"
    started = time.perf_counter()
    subprocess.run([str(snakemake), "-n", "--configfile", "config/presets/blackpearl.yaml"], cwd=copy, check=True, capture_output=True)
    return time.perf_counter() - started


def predict_peak_rss_mib(base: Path, workdir: Path) -> float:
    """Peak RSS of the command-line prediction of the 100 bundled test pairs (a child process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(
        [
            sys.executable,
            "-m",
            "arena_distill",
            "predict",
            "--model",
            str(base),
            "--input",
            str(SAMPLE / "test.csv"),
            "--output",
            str(workdir / "predictions.csv"),
            "--max-length",
            "256",
        ],
        check=True,
        capture_output=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(before, after) / 1024


def summary_markdown(results: list[Result]) -> str:
    lines = [
        "# Benchmarks of the embedded default",
        "",
        "Each ratio is against a baseline measured in the same run, on the same model and rows.",
        "",
        "| measurement | value | unit | baseline | ratio | note |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else ""
        value = f"{r.value:,.0f}" if r.value >= 100 else f"{r.value:.3g}"
        note = r.note.replace("|", "\\|")  # a literal bar would end the table cell
        lines.append(f"| {r.name} | {value} | {r.unit} | {r.baseline} | {ratio} | {note} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m arena_distill.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/bench")
    parser.add_argument("--steps", type=int, default=12, help="training steps per loop")
    parser.add_argument("--rows", type=int, default=160, help="pairs scored by each prediction loop")
    parser.add_argument("--threads", type=int, default=1, help="torch threads; 1 as in every demo job (two run side by side on two cores)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    setup = Setup.from_config()
    table, _ = read_pairs(SAMPLE / "train.parquet", with_labels=True)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        tokenizer, base = tiny_base(setup, table.sample(n=min(2000, len(table)), random_state=0), workdir)
        encoder = PairEncoder(tokenizer, TextConfig(max_length=setup.max_length, prompt_tokens=setup.max_length // 2))
        train_rows = with_swaps(table.sample(n=min(len(table), setup.batch_size * args.steps), random_state=1))
        examples = Examples(encode_rows(encoder, train_rows), {"label": train_rows["label"].to_numpy(dtype=np.int64)})
        results = training_bench(setup, examples, base, tokenizer, args.steps, workdir)
        scored = table.sample(n=min(args.rows, len(table)), random_state=2)
        results += prediction_bench(Examples(encode_rows(encoder, scored)), base, tokenizer, setup)
        results += preset_batch_shares()
        results.append(Result("workflow: snakemake -n of the preset", preset_dry_run_seconds(workdir), "s"))
        results.append(
            Result("workflow: peak RSS of python -m arena_distill predict (100 pairs)", predict_peak_rss_mib(base, workdir), "MiB")
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=1))
    (out / "summary.md").write_text(summary_markdown(results))
    print(summary_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
