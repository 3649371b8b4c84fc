"""The HTML report: its own pages (firstlayer.report) on small tables; and, end to end (marked e2e), `snakemake
--report` on a smoke run gives one self-contained file holding every figure, the replication table and the
configuration, and it renders in headless Chromium without console errors."""

from __future__ import annotations

import base64
import contextlib
import html
import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from firstlayer.report import configuration_html, holds_cell, replication_html

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "tests" / "configs" / "smoke.yaml"
FIGURES = ("profiles", "fit_overlay", "consistency", "filters", "evolution", "whitening", "accuracy", "linear_check",
           "matched_tau")  # fmt: skip
CATEGORIES = ("1 Summary", "2 Training", "3 Energy profiles", "4 Formula fit", "5 Whitening", "6 Theory check")


def test_replication_page() -> None:
    table = pd.DataFrame({
        "claim": ["seeds agree", "frozen <ok>", "labels matter"], "paper": ["§3", "§3", "§4"],
        "condition": ["arch linear", "(none)", "arch linear"],
        "measured": ["r = 0.99", "not run: no frozen runs", "r = 0.2"], "value": [0.99, np.nan, 0.2],
        "criterion": [">= 0.9", "x", ">= 0.9"], "holds": [True, None, False],
    })  # fmt: skip
    page = replication_html(table)
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "http" not in page
    assert "frozen &lt;ok&gt;" in page and '<td class="yes">yes</td>' in page and '<td class="not-run">' in page
    assert '<td class="no">no</td>' in page and page.count("<tr>") == len(table) + 1
    assert (
        "1 of 2 decided rows hold on this run; 1 rows are undecided, not informative, not applicable or not run" in page
    )
    with pytest.raises(ValueError, match=r"replication table lacks columns \['holds'\]"):
        replication_html(table.drop(columns="holds"))


def test_replication_page_colours_the_verdict_words() -> None:
    words = ["yes", "no", "undecided", "not informative", "not applicable", "not run"]
    table = pd.DataFrame({
        "claim": [f"claim {i}" for i in range(6)], "paper": "§3", "condition": "arch linear", "measured": "r = 0.9",
        "value": 0.9, "criterion": ">= 0.9", "holds": [True, False, None, None, None, None], "verdict": words,
    })  # fmt: skip
    page = replication_html(table)
    for word in words:  # the verdict column, not holds, is what a row says
        css = word.replace(" ", "-")
        assert f'<td class="{css}">{word}</td>' in page
        assert f"td.{css}" in page  # and each class has a colour in the page's style
    assert "1 of 2 decided rows hold on this run; 4 rows are undecided" in page
    assert [holds_cell(w) for w in ("undecided", "not informative")] == [
        ("undecided", "undecided"), ("not informative", "not-informative")]  # fmt: skip
    with pytest.raises(ValueError, match="unknown verdict"):
        holds_cell("maybe")


def test_holds_cell_reads_missing_as_not_run() -> None:
    assert [holds_cell(v) for v in (True, False, None, float("nan"), np.bool_(True))] == [
        ("yes", "yes"), ("no", "no"), ("not run", "not-run"), ("not run", "not-run"), ("yes", "yes"),
    ]  # fmt: skip


def test_configuration_page() -> None:
    page = configuration_html({"datasets": {"photos": {"source": "embedded"}}}, {"c.yaml": "a: <1>"}, "abc123")
    assert page.startswith("<!DOCTYPE html>") and "<title>Configuration of this run</title>" in page
    assert "photos:" in page and "source: embedded" in page and "abc123" in page
    assert "c.yaml (as given)" in page and "a: &lt;1&gt;" in page


# ------------------------------------------------------------------------ end to end: the report of the smoke run


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(SMOKE), "--cores", "2", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def smoke_report(smoke_run: Path) -> Path:
    """The report of the shared smoke run (tests/conftest.py), results/report.html."""
    workdir = smoke_run
    report = workdir / "results" / "report.html"
    proc = snakemake(workdir, "--report", str(report))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return report


def embedded(html: str, name: str):
    """The JSON a report assigns to `var name = ...;` in its <script id=name> block."""
    match = re.search(rf'<script id="{name}">\s*var \w+ = (.*?);\s*</script>', html, flags=re.S)
    assert match, f"no <script id={name!r}> in the report"
    return json.loads(match.group(1))


def decoded(entry: dict) -> bytes:
    """The file a report result embeds as a base64 data URI."""
    head, _, data = entry["data_uri"].partition(";base64,")
    assert head.startswith("data:"), "the result is not embedded (self-contained report)"
    return base64.b64decode(data)


@pytest.mark.e2e
def test_report_holds_every_figure(smoke_report: Path) -> None:
    html = smoke_report.read_text()
    results = embedded(html, "results")
    workdir = smoke_report.parents[1]
    for name in FIGURES:
        for fmt, mime in (("png", "image/png"), ("svg", "image/svg+xml")):
            path = f"results/figures/{name}.{fmt}"
            assert path in results, f"{path} is not in the report"
            entry = results[path]
            assert entry["mime_type"] == mime
            assert decoded(entry) == (workdir / path).read_bytes()
            assert len(entry["caption"]) > 200, f"{path} has no caption"
            assert entry["labels"]["format"] == fmt.upper()
    categories = embedded(html, "categories")
    assert sorted(categories) == list(CATEGORIES)
    assert "What do CNNs learn in their first layer" in embedded(html, "workflow-desc")


@pytest.mark.e2e
def test_report_holds_the_replication_table_and_configuration(smoke_report: Path) -> None:
    results = embedded(smoke_report.read_text(), "results")
    page = decoded(results["results/report/replication.html"]).decode()
    assert results["results/report/replication.html"]["mime_type"] == "text/html"
    replication = pd.read_parquet(smoke_report.parents[1] / "results" / "tables" / "replication.parquet")
    assert page.count("<tr>") == len(replication) + 1
    for claim in replication["claim"]:
        assert html.escape(claim) in page
    config = decoded(results["results/report/configuration.html"]).decode()
    assert "smoke.yaml (as given)" in config and "train_per_class: 24" in config
    assert "eval_batch_size" in config  # a default the smoke config does not set: the validated config is shown


@pytest.mark.e2e
def test_report_is_self_contained(smoke_report: Path) -> None:
    html = smoke_report.read_text()
    assert not re.search(r'<(script|img|link|iframe)[^>]+(src|href)="(https?:)?//', html)
    assert smoke_report.stat().st_size < 20_000_000


# ------------------------------------------------------------------------ in a real browser


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium; .ci/run installs it where it can)"
)


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON messages ending
    in NUL on file descriptors 3 and 4), so no browser driver package is needed. Records console errors, uncaught
    exceptions and error log entries of the page."""

    def __init__(self, profile: Path) -> None:
        command_read, self._command = os.pipe()
        self._reply, reply_write = os.pipe()
        args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            "about:blank",
        ]
        self.process = subprocess.Popen(
            # bash, not sh: dash redirects only single-digit descriptors
            ["bash", "-c", f'exec "$@" 3<&{command_read} 4>&{reply_write}', "bash", CHROMIUM, *args],
            pass_fds=(command_read, reply_write),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(command_read)
        os.close(reply_write)
        self._buffer, self._id, self.events = b"", 0, []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride", width=1400, height=1000, deviceScaleFactor=1, mobile=False,
                  session=True)  # fmt: skip

    def _receive(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._reply], [], [], remaining)[0]:
                raise TimeoutError(f"no message from Chromium within {timeout} s")
            chunk = os.read(self._reply, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed its DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(raw)
        if "method" in message:
            self.events.append(message)
        return message

    def call(self, method: str, *, session: bool = False, timeout: float = 60, **params) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._command, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive(timeout)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, session=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_until(self, expression: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression} still false after {timeout} s")
            time.sleep(0.2)

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png", session=True)["data"]))
        return path

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries seen so far."""
        out = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                out.append(f"uncaught: {details.get('exception', {}).get('description') or details.get('text')}")
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                out.append(
                    "console.error: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
                )
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                out.append(f"log: {params['entry']['text']}")
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call("Browser.close", timeout=10)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self._command)
        os.close(self._reply)


@pytest.fixture
def browser(tmp_path: Path):
    chromium = Browser(tmp_path / "profile")
    yield chromium
    chromium.close()


def screenshot_spread(path: Path) -> tuple[int, float]:
    """Distinct colours and the standard deviation of the grey levels of a PNG."""
    import matplotlib.image

    image = matplotlib.image.imread(path)[..., :3]
    return len(np.unique(image.reshape(-1, 3), axis=0)), float(image.mean(axis=2).std())


@pytest.mark.e2e
@needs_chromium
def test_console_errors_are_detected(browser: Browser, tmp_path: Path) -> None:
    """The check below can fail: a page with a script error and a console error is caught."""
    page = tmp_path / "broken.html"
    page.write_text("<html><body><p>x</p><script>console.warn('w'); console.error('deliberate'); undefined_call();"
                    "</script></body></html>")  # fmt: skip
    browser.call("Page.navigate", url=page.as_uri(), session=True)
    browser.wait_until("document.readyState === 'complete'")
    errors = browser.errors()
    assert any("deliberate" in e for e in errors) and any("undefined_call" in e for e in errors), errors
    assert not any("'w'" in e or e.endswith(" w") for e in errors)  # warnings are not errors


@pytest.mark.e2e
@needs_chromium
def test_report_renders_in_chromium(smoke_report: Path, browser: Browser, tmp_path: Path) -> None:
    browser.call("Page.navigate", url=smoke_report.as_uri(), session=True)
    browser.wait_until("typeof app !== 'undefined' && document.body.innerText.includes('What do CNNs learn')")
    colours, spread = screenshot_spread(browser.screenshot(tmp_path / "home.png"))
    assert colours > 50 and spread > 0.05, f"blank screenshot ({colours} colours, grey std {spread:.3f})"
    for name in FIGURES:  # every figure is decoded and drawn by the browser
        path = f"results/figures/{name}.png"
        browser.evaluate(
            f"app.setView({{content: 'img', resultPath: '{path}', contentPath: results['{path}'].data_uri}})"
        )
        browser.wait_until(f"Array.from(document.images).some(i => i.src === results['{path}'].data_uri "
                           "&& i.complete && i.naturalWidth > 0)", timeout=30)  # fmt: skip
    colours, spread = screenshot_spread(browser.screenshot(tmp_path / "figure.png"))
    assert colours > 50 and spread > 0.05, f"blank figure view ({colours} colours, grey std {spread:.3f})"
    browser.evaluate("app.showCategory('1 Summary')")
    assert not browser.errors(), "\n".join(browser.errors())
