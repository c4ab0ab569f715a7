"""What every benchmark returns (`Result`: a value, and its ratio against a baseline measured
in the same run) and the Markdown table `make bench` writes to `summary.md`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    name: str
    value: float
    unit: str
    baseline: str = ""
    ratio: float | None = None
    note: str = ""


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
