"""The HTML report in a real browser: headless Chromium loads it, shows the tables and the plots, and
runs no script from the records. Skips where no Chromium is installed (.ci/run installs Debian's)."""
import os
import shutil
import subprocess

import pytest

from harness.report import render
from tests.test_plots_html import records  # noqa: F401  (the fixture)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
         "--allow-file-access-from-files"]


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (.ci/run installs Debian's package)")
def test_html_report_renders_in_headless_chromium(records, tmp_path):  # noqa: F811
    page = tmp_path / "report.html"
    page.write_text(render(records, "html", budget="gmacs=50"))
    url = page.as_uri()
    dom = subprocess.run([CHROMIUM, *FLAGS, "--virtual-time-budget=5000", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert html.count("<table") == 4 and html.count("<img") == 4
    assert "alert(1)" in html and "<script>alert(1)</script>" not in html  # shown as text, never run
    shot = tmp_path / "report.png"
    run = subprocess.run([CHROMIUM, *FLAGS, f"--screenshot={shot}", "--window-size=1400,1800", url],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.stat().st_size > 20_000, run.stderr[-2000:]
    if os.environ.get("HARNESS_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["HARNESS_KEEP_SCREENSHOT"])
