"""The Snakemake report of the tiny run, rendered in headless Chromium (Debian's package).

The report is one HTML file whose figures are embedded as data URIs and shown by a React
app. The test injects two scripts into a copy of it: one, first in the page, records every
error and `console.error`; one, on load, decodes every embedded image. Chromium's
`--dump-dom` then hands back what they found.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from html import unescape
from pathlib import Path

import pytest

from tests.conftest import snakemake

CATEGORIES = ["Data", "Teachers", "Student", "Final model", "Run"]
FIGURES = [
    "data_labels",
    "teacher_curves",
    "student_curves",
    "cv",
    "reliability",
    "confusion",
    "position_bias",
    "class_shares",
    "job_resources",
]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RECORD_ERRORS = """<script>
window.reportErrors = [];
window.addEventListener("error", (event) => window.reportErrors.push(String(event.message || event)));
const consoleError = console.error;
console.error = (...args) => { window.reportErrors.push(args.map(String).join(" ")); consoleError(...args); };
</script>"""
CHECK_FIGURES = """<script>
window.addEventListener("load", async () => {
  const images = Object.entries(results).filter(([, result]) => result.mime_type.startsWith("image/"));
  const decoded = await Promise.all(images.map(([path, result]) => new Promise((done) => {
    const image = new Image();
    image.onload = () => done([path, [image.naturalWidth, image.naturalHeight]]);
    image.onerror = () => done([path, [0, 0]]);
    image.src = result.data_uri;
  })));
  const out = document.createElement("pre");
  out.id = "report-check";
  out.textContent = JSON.stringify({errors: window.reportErrors, figures: Object.fromEntries(decoded),
                                    categories: Object.keys(categories), app: document.getElementById("app").innerText});
  document.body.appendChild(out);
});
</script>"""


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium, installed when missing (as root; elsewhere the test is skipped)."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip("the report test installs Debian's chromium package: it needs root (or chromium on PATH)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # The lock timeout: the loopback cluster may be installing Slurm at the same time.
    wait = ["-o", "DPkg::Lock::Timeout=600"]
    for command in (["apt-get", *wait, "update", "-qq"], ["apt-get", *wait, "install", "-y", "-qq", "--no-install-recommends", "chromium"]):
        subprocess.run(command, check=True, env=env, capture_output=True, timeout=900)
    return shutil.which("chromium") or "/usr/bin/chromium"


def with_checks(html: str) -> str:
    """The report with the error recorder first in its head and the figure check last in its
    body (the bundled libraries' sources contain both tags in strings: the first `<head>` and
    the last `</body>` are the page's own)."""
    head = html.index("<head>") + len("<head>")
    body = html.rindex("</body>")
    return html[:head] + RECORD_ERRORS + html[head:body] + CHECK_FIGURES + html[body:]


def render(chromium: str, page: Path, profile: Path) -> str:
    """The page's DOM after its scripts ran (virtual time lets the load handlers finish)."""
    result = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=20000", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_the_report_shows_every_figure_without_errors(tiny_local_run, tmp_path, chromium):
    report = tmp_path / "report.html"
    snakemake(tiny_local_run, "--profile", "profiles/local", "--configfile", "small.yaml", "--report", str(report))
    page = tmp_path / "check.html"
    page.write_text(with_checks(report.read_text()))

    dom = render(chromium, page, tmp_path / "profile")

    assert '<pre id="report-check">' in dom, dom[-2000:]
    found = json.loads(unescape(dom.split('<pre id="report-check">', 1)[1].split("</pre>", 1)[0]))
    assert found["errors"] == []
    assert sorted(found["categories"]) == sorted(CATEGORIES)
    figures = {Path(path).stem: size for path, size in found["figures"].items()}
    assert sorted(figures) == sorted(FIGURES)
    assert all(width > 200 and height > 200 for width, height in figures.values()), figures
    assert "Final model" in found["app"] and "Loading" not in found["app"]
