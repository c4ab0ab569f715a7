"""The GPU check's report: markdown rows of what the benchmarks measured (tokens/s, MFU, memory), the gradient, GPTQ and warm-up checks."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any


def first_mfu(entries: Sequence[Mapping[str, Any]], *preferences: Mapping[str, Any]) -> tuple[float | None, Mapping[str, Any]]:
    """The MFU of the first entry that matches a preference (every key equal), in the order of
    the preferences, and that entry ({} when none has an MFU)."""
    for match in preferences:
        for entry in entries:
            if entry.get("mfu") is not None and all(entry.get(key) == value for key, value in match.items()):
                return entry["mfu"], entry
    return None, {}


def fmt(value: float | None, pattern: str) -> str:
    return "n/a" if value is None else format(value, pattern)


ROWS: dict[str, Callable[[Mapping[str, Any]], tuple[str, str, str, str]]] = {
    "student_predict": lambda e: ("a", "gemma-2-9b bf16", "predict", f"{e['attn']}, up to {e['max_length']:,} tokens"),
    "student_train": lambda e: ("b", "gemma-2-9b bf16 + LoRA r64", "train", e["case"]),
    "teacher_predict": lambda e: (
        "d",
        f"Llama-3-70B shape, {e['layers']} layers, NF4",
        "predict",
        f"sdpa, up to {e['max_length']:,} tokens",
    ),
    "teacher_train": lambda e: (
        "d",
        f"Llama-3-70B shape, {e['layers']} layers, NF4 + LoRA r64",
        "train",
        f"packed {e['micro_batch_tokens']:,}, sdpa, checkpointing, kbit_upcast {'on' if e['kbit_upcast'] else 'off'}",
    ),
}
"""(comparison, model, work, setting) of a benchmark entry of each kind, for its report row."""


TABLE_HEAD = ["| | model | work | setting | tokens/s | MFU | peak GiB | real tokens | note |", "|---|---|---|---|---|---|---|---|---|"]


def entry_note(entry: Mapping[str, Any]) -> str:
    if "error" in entry:
        return f"FAILED: {entry['error']}"
    parts = [entry["note"]] if "note" in entry else []
    if "first_call_s" in entry:
        parts.append(f"first call {entry['first_call_s']:.1f} s")
    if "max_abs_logit_diff" in entry:
        parts.append(f"largest logit difference from eager {entry['max_abs_logit_diff']:.3g}")
    if "flex_graphs" in entry:
        parts.append(f"{entry['flex_graphs']} flex graphs compiled")
    return "; ".join(parts)


def bench_row(kind: str, entry: Mapping[str, Any]) -> str:
    """One report row: tokens/s and MFU count real tokens; `real tokens` is their share of the tokens computed."""
    comparison, model, work, setting = ROWS[kind](entry)
    share = entry["real_tokens"] / entry["computed_tokens"] if entry.get("computed_tokens") else None
    numbers = [fmt(entry.get(key), pattern) for key, pattern in (("tokens_per_s", ",.0f"), ("mfu", ".1%"), ("peak_gib", ".1f"))]
    numbers.append(fmt(share, ".0%"))
    return f"| {comparison} | {model} | {work} | {setting} | {' | '.join(numbers)} | {entry_note(entry)} |"


def gradient_lines(check: Mapping[str, Any]) -> list[str]:
    """(c): each precision's largest relative error of a LoRA/head gradient (or of the logits)."""
    lines = [
        f"(c) {check['candidate']} vs eager on gemma-2-9b cut to {check['layers']} layers, {check['rows']} real-length rows "
        f"packed into {check['tokens']:,} tokens, attention scores scaled into the soft-cap's bend: "
        f"{'PASS' if check.get('passed') else 'FAIL'}"
    ]
    for dtype, found in check.get("dtypes", {}).items():
        if "error" in found:
            lines.append(f"- {dtype}: {found['error']}")
            continue
        own = "" if found.get("eager_max_error") is None else f"; eager's own {dtype} error {found['eager_max_error']:.2e}"
        lines.append(
            f"- {dtype}: largest relative error against the fp32 eager gradient {found['max_error']:.2e} "
            f"({found['worst']}){own}; limit {found['limit']}"
        )
    return lines


def gptq_lines(bench: Mapping[str, Any]) -> list[str]:
    """(e): GPTQ's tokens/s against its bf16 merge, and that ratio applied to the full model's flex scoring."""
    gptq = bench["gptq"]
    if gptq.get("error"):
        return [f"(e) GPTQ 8-bit: FAILED ({gptq['error']})"]
    ratio = gptq["gptq"]["tokens_per_s"] / gptq["bf16"]["tokens_per_s"]
    _, full = first_mfu(bench["student_predict"], {"attn": gptq["attn"], "max_length": gptq["max_length"]})
    scaled = f"; on the full model's {gptq['attn']} scoring: about {full['tokens_per_s'] * ratio:,.0f} tokens/s" if full else ""
    return [
        f"(e) GPTQ 8-bit (gemma-2-9b cut to {gptq['layers']} layer, kernels {', '.join(gptq['kernels']) or 'none'}), "
        f"{gptq['attn']} up to {gptq['max_length']:,} tokens: {gptq['gptq']['tokens_per_s']:,.0f} tokens/s against "
        f"{gptq['bf16']['tokens_per_s']:,.0f} for its bf16 merge, ratio {ratio:.2f}{scaled}; largest logit difference "
        f"{gptq['max_abs_logit_diff']:.3g}"
    ]


def bench_lines(bench: Mapping[str, Any]) -> list[str]:
    """The benchmarks' report: the table of speeds, then (c), the teacher's logit cost, (e) and what was not measured."""
    lines = [
        f"Peak: {fmt(bench['peak_tflops'], '.0f')} TFLOP/s dense bf16 ({bench['gpu']}). Rows of the real arena lengths; "
        "tokens/s and MFU count real tokens only (padding is waste), MFU model FLOPs (no recomputation).",
        "",
        *TABLE_HEAD,
    ]
    lines += [bench_row(kind, entry) for kind in ROWS for entry in bench[kind]]
    if bench.get("gradient_check"):
        lines += ["", *gradient_lines(bench["gradient_check"])]
    if bench.get("teacher_logit_diff") is not None:
        lines += ["", f"(d) kbit_upcast off against on, same NF4 weights, eval: largest logit difference {bench['teacher_logit_diff']:.3g}"]
    if bench.get("gptq"):
        lines += ["", *gptq_lines(bench)]
    if bench["not_measured"]:
        lines += ["", f"Not measured (out of time): {', '.join(bench['not_measured'])}"]
    for extra in ([f"FAILED: {error}" for error in bench["errors"]], bench["notes"]):
        lines += ["", *extra] if extra else []
    return lines


def warmup_lines(warmups: Mapping[str, Any]) -> list[str]:
    """The side processes beside the workflow: what each built and in how long (the flex
    warm-up's seconds are FlexAttention's compile time on first use)."""
    lines = []
    flex = warmups.get("flex")
    if flex is not None and flex.get("error"):
        lines.append(f"flex_attention warm-up: FAILED ({flex['error']})")
    elif flex is not None:
        parts = ", ".join(f"{part} {seconds:.0f} s" for part, seconds in flex["seconds"].items())
        errors = f"; errors: {'; '.join(flex['errors'])}" if flex["errors"] else ""
        lines.append(
            f"flex_attention warm-up beside the workflow (gemma-2-9b's attention on a narrow model, {flex['graphs']} "
            f"graphs): {parts}, compiles included{errors}"
        )
    gptq = warmups.get("gptq")
    if gptq is not None and gptq.get("error"):
        lines.append(f"GPTQ warm-up: FAILED ({gptq['error']})")
    elif gptq is not None:
        export = f"; the benchmark's model exported in {gptq['export_seconds']:.0f} s" if "export_seconds" in gptq else ""
        lines.append(
            f"GPTQ kernels built on first use (one-layer export and load, beside the workflow): {gptq['seconds']:.0f} s; "
            f"the loaded model runs {', '.join(gptq['kernels']) or 'no GPTQModel layer'}{export}"
        )
    return lines
