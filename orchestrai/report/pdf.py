"""A report as PDF: the HTML report (every step and timeline row open) printed by headless Chromium.

One renderer for screen and paper: the same page, its SVG and CSS, as a browser shows it
(docs/architecture.md says why not WeasyPrint). The page is printed from a temporary file with no
network (every host name unresolvable) and a throwaway profile.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import OrchestraiError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
         "--host-resolver-rules=MAP * ~NOTFOUND")


class PdfToolMissing(OrchestraiError):
    exit_code = 2


def find_browser() -> str | None:
    """Chromium (or Chrome): $ORCHESTRAI_CHROMIUM first, then the usual names on PATH."""
    chosen = os.environ.get("ORCHESTRAI_CHROMIUM")
    if chosen:
        return shutil.which(chosen) or (chosen if Path(chosen).is_file() else None)
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def browser_command(browser: str, profile: Path, *args: str) -> list[str]:
    return [browser, *FLAGS, f"--user-data-dir={profile}", *args]


def write_pdf(html: str, target: Path, *, timeout_s: float = 120.0) -> None:
    """Print `html` to `target` (PdfToolMissing when no Chromium is installed)."""
    browser = find_browser()
    if browser is None:
        raise PdfToolMissing("a PDF report needs Chromium, which is not installed",
                             hint="apt-get install chromium (or set ORCHESTRAI_CHROMIUM to a Chrome binary); "
                                  "-o report.html needs nothing")
    with tempfile.TemporaryDirectory(prefix="orchestrai-pdf-") as scratch:
        page = Path(scratch) / "report.html"
        page.write_text(html, encoding="utf-8")
        output = Path(scratch) / "report.pdf"
        command = browser_command(browser, Path(scratch) / "profile", "--no-pdf-header-footer",
                                  f"--print-to-pdf={output}", page.as_uri())
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                                  stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            raise OrchestraiError(f"{browser} did not print the PDF within {timeout_s:.0f} s") from None
        if not output.is_file() or output.stat().st_size == 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise OrchestraiError(f"{browser} wrote no PDF (exit {done.returncode}): {last[:300]}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(output, target)
