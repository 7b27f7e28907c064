"""`bench ui` on a suite's store: the link it prints opens, in headless Chromium with no clicks, the job
runs compared (model names and CIDEr values on the page), and the parent run shows the verdict table.

The UI's URL parameters and view-state format are MLflow's (bench/mlflow_view.py); an MLflow that changes
them fails here instead of opening an empty page.
"""

import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.ui_store import CIDER, build_store

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def _links(server: subprocess.Popen, timeout: float = 120.0) -> dict[str, str]:
    """The links `bench ui` prints before it hands over to MLflow: {what: url}."""
    links: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(links) < 3:
        line = server.stdout.readline()
        if not line:
            break
        found = re.match(r"\S+: (job runs by model|latest verdict|verdict table)\s+(http\S+)", line.strip())
        if found:
            links[found.group(1)] = found.group(2)
    assert len(links) == 3, f"bench ui did not print the three links: {links}"
    return links


def _page_text(browser, url: str, expect: str, timeout_ms: int = 60000) -> str:
    """The visible text of `url` once `expect` shows (or the timeout passes), opened in a fresh context."""
    context = browser.new_context()  # no local storage: what a first visit sees
    page = context.new_page()
    page.goto(url)
    try:
        page.get_by_text(expect, exact=False).first.wait_for(timeout=timeout_ms)
    except Exception:  # noqa: BLE001 - the assertions below say what was missing
        pass
    text = page.inner_text("body")
    context.close()
    return text


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_bench_ui_link_opens_the_comparison_and_the_verdict(write_config, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    config = build_store(write_config, tmp_path)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "bench.cli", "ui", "--config", str(config), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        links = _links(server)
        _wait_http(f"http://127.0.0.1:{port}/")
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            runs = _page_text(browser, links["job runs by model"], "nearest-neighbour")
            verdict = _page_text(browser, links["latest verdict"], "diffusion ahead")
            table = _page_text(browser, links["verdict table"], "not tested")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert "constant" in runs and "nearest-neighbour" in runs, runs[:3000]
    for (label, seed), cider in CIDER.items():
        assert str(cider) in runs, f"CIDEr {cider} of {label} seed {seed} is not on the page:\n{runs[:3000]}"
    assert "4 matching runs" in runs, runs[:3000]  # the job runs only: the parent run is filtered out
    assert "Group: label: nearest-neighbour" in runs and "0.882 (average)" in runs  # seeds averaged per model
    order = [runs.index(str(cider)) for cider in sorted(CIDER.values(), reverse=True)]
    assert order == sorted(order), "the job runs are not sorted by CIDEr, highest first"
    assert "diffusion ahead" in verdict, verdict[:3000]  # the description: the verdict's one-line answer
    assert "not tested (timings; autoregressive faster)" in table and "+55.9" in table, table[:3000]
