"""The HTML report, opened in headless Chromium: the plots are there and nothing complains."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from tuner.outputs.webpage import write_report
from tuner.study.results import load_results

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]


def chromium() -> str:
    """The Chromium binary, or a loud skip where there is none."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    reason = (
        "HEADLESS CHROMIUM NOT FOUND: the HTML report was not opened in a browser; "
        "install Debian's chromium (apt-get install -y chromium; .ci/run tries this)"
    )
    sys.stderr.write(f"\nWARNING: {reason}\n")
    warnings.warn(reason, stacklevel=2)
    pytest.skip(reason)


def open_page(page: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(
        [*command, page.resolve().as_uri()], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def page(finished_study, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    write_report(load_results(finished_study.url, "tiny"), out)
    return out


def test_the_page_has_its_plots_and_no_console_errors(page, tmp_path):
    dumped = open_page(page, tmp_path, "--dump-dom")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    images = re.findall(r"<img [^>]*src=\"data:image/png;base64,", dumped.stdout)
    assert len(images) + dumped.stdout.count("<svg") >= 4
    console = [line for line in dumped.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console


def test_a_screenshot_of_the_page(page, tmp_path):
    shot = tmp_path / "report.png"
    result = open_page(page, tmp_path, "--window-size=1100,2400", f"--screenshot={shot}")
    assert result.returncode == 0, result.stderr[-2000:]
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 20_000


def test_the_console_check_sees_errors(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    dumped = open_page(bad, tmp_path, "--dump-dom")
    assert any("Uncaught ReferenceError" in line for line in dumped.stderr.splitlines())


def test_a_study_without_a_completed_trial_still_gets_a_page(tmp_path):
    from tuner.config.schema import validate_config
    from tuner.study.store import Storage, TrialState, sqlite_url

    from .conftest import tiny_config_dict

    url = sqlite_url(tmp_path / "study.db")
    storage = Storage(url)
    config = validate_config(tiny_config_dict(tmp_path / "gone.csv")).to_dict()
    study = storage.create_study("broken", config)
    trial = storage.start_trial(study, {}, {"neuron_pct": 0.1, "neuron_shrink": 0.5}, seed=1)
    storage.finish_trial(trial, state=TrialState.FAILED, error_kind="crashed", error="boom")
    storage.close()
    written = write_report(load_results(url, "broken"), tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert "none: no trial completed" in page and "crashed" in page and "boom" in page
    assert [Path(p).name for p in written["plots"]] == ["r-timings.png"]
