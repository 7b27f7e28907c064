"""`bench ui` serves the MLflow UI on the configured store: headless Chromium sees the runs."""

import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

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


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_bench_ui_shows_the_experiment_and_its_runs(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("diffcap-bench/ui-check",
                                             artifact_location=(tmp_path / "artifacts").as_uri())
    for name in ("ladic-mini-run", "vit-gpt2-mini-run"):
        run = client.create_run(experiment_id, run_name=name)
        client.log_metric(run.info.run_id, "CIDEr", 1.0)
        client.set_terminated(run.info.run_id)
    config = tmp_path / "bench.yaml"
    config.write_text(f"tracking: {{uri: '{uri}'}}\nsuites:\n  s: {{tasks: [shapes], models: [constant]}}\n")

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "bench.cli", "ui", "--config", str(config),
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_http(f"http://127.0.0.1:{port}/")
        page = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=20000", "--dump-dom",
             f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs"],
            capture_output=True, text=True, timeout=120).stdout
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert "diffcap-bench/ui-check" in page
    assert "ladic-mini-run" in page and "vit-gpt2-mini-run" in page
