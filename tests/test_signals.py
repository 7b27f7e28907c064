"""Stopping the driver with real signals: a second one exits at once; a dead driver's MLflow run is closed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bench.config import load_config
from bench.suite import run_suite, track_suite
from tests.fakes import use_instant_executor

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_second_signal_while_winding_down_exits_at_once(sig, code):
    proc = _python("""
        import time
        from bench.signals import second_signal_exits
        with second_signal_exits():  # as the driver while it writes the summary after a first Ctrl-C
            print("winding down", flush=True)
            time.sleep(120)
        """)
    assert proc.stdout.readline().strip() == "winding down"
    sent = time.monotonic()
    proc.send_signal(sig)
    assert proc.wait(timeout=20) == code
    assert time.monotonic() - sent < 20
    assert "again: exiting now" in proc.stdout.read()


def test_sigterm_raises_a_keyboard_interrupt_that_exits_143():
    proc = _python("""
        import sys, time
        from bench.signals import exit_code, handle_sigterm
        handle_sigterm()
        try:
            print("running", flush=True)
            time.sleep(120)
        except KeyboardInterrupt as err:
            print("cleaned up", flush=True)
            sys.exit(exit_code(err))
        """)
    assert proc.stdout.readline().strip() == "running"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 143
    assert "cleaned up" in proc.stdout.read()


SUITE = """
executor: {{kind: local}}
tracking: {{kind: mlflow, uri: "{uri}", experiment: "test/{{suite}}"}}
suites:
  mini: {{tasks: [shapes], models: [constant]}}
"""


def _parents(uri: str) -> dict[str, str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return {r.info.run_id: r.info.status for r in runs if r.data.tags.get("bench.kind") == "suite"}


@pytest.mark.parametrize("later", ["run", "track"])
def test_a_parent_run_left_running_by_a_killed_driver_is_closed_by_a_later_invocation(
        write_config, tmp_path, monkeypatch, later):
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    path = write_config(SUITE.format(uri=uri))
    cfg = load_config(path)
    driver = _python(f"""
        import time
        from bench.config import load_config
        from bench.suite import _absolute
        from bench.tracking import make_tracker
        cfg = load_config({str(path)!r})
        tracker = make_tracker(cfg.tracking, _absolute(cfg))
        tracker.start("mini", {{}})
        print("started", flush=True)
        time.sleep(120)
        """)
    assert driver.stdout.readline().strip() == "started", driver.stdout.read()
    driver.send_signal(signal.SIGKILL)  # no handler runs: the run stays RUNNING
    driver.wait()
    (dead,) = _parents(uri)
    assert _parents(uri)[dead] == "RUNNING"

    use_instant_executor(monkeypatch)
    if later == "run":
        run_suite(cfg, "mini", echo=lambda _: None)
    else:
        run_suite(load_config(path, ["tracking.kind=none"]), "mini", echo=lambda _: None)
        track_suite(cfg, "mini", echo=lambda _: None)
    statuses = _parents(uri)
    assert statuses.pop(dead) == "KILLED"
    assert set(statuses.values()) == {"FINISHED"}
