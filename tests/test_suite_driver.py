"""The driver without models: one run per suite folder at a time, and a summary of the whole suite."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from bench.cli import main
from bench.config import load_config
from bench.suite import run_suite
from tests.fakes import use_instant_executor

SUITE = """
executor: {kind: local}
tracking: {kind: none}
suites:
  mini: {tasks: [shapes], models: [constant, nearest-neighbour, vit-gpt2-tiny]}
"""
ROOT = Path(__file__).resolve().parents[1]


def hold_lock(suite_dir: Path) -> subprocess.Popen:
    """Another process holding the suite's lock, as a running `bench run` would; returns once it holds it."""
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from bench.lock import suite_lock
        with suite_lock(Path({str(suite_dir)!r}), command="bench run --suite mini (other)"):
            print("held", flush=True)
            time.sleep(120)
        """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_on_a_suite_is_refused_naming_the_holder(write_config, monkeypatch, capsys):
    executor = use_instant_executor(monkeypatch)
    path = write_config(SUITE)
    suite_dir = load_config(path).results_dir / "mini"
    holder = hold_lock(suite_dir)
    try:
        assert main(["run", "--suite", "mini", "--config", str(path)]) == 1
        err = capsys.readouterr().err
        assert f"pid {holder.pid} on {socket.gethostname()}" in err and "bench run --suite mini (other)" in err
        assert "Traceback" not in err and executor.ran == []
    finally:
        holder.send_signal(signal.SIGKILL)  # a crashed holder: the kernel drops its lock
        holder.wait()
    assert main(["run", "--suite", "mini", "--config", str(path)]) == 0
    assert sorted(executor.ran) == ["constant", "nearest-neighbour", "vit-gpt2-tiny"]


def test_a_subset_run_keeps_every_finished_job_in_the_summary(write_config, monkeypatch):
    executor = use_instant_executor(monkeypatch)
    cfg = load_config(write_config(SUITE))
    run_suite(cfg, "mini", echo=lambda _: None)
    summary = cfg.results_dir / "mini" / "summary.csv"
    before = list(csv.DictReader(summary.open()))
    run_suite(cfg, "mini", force=True, only=["nearest-neighbour"], echo=lambda _: None)
    assert executor.ran[-1:] == ["nearest-neighbour"] and len(executor.ran) == 4
    after = list(csv.DictReader(summary.open()))
    assert [r["model"] for r in after] == [r["model"] for r in before] == ["constant", "nearest-neighbour",
                                                                          "vit-gpt2-tiny"]
    assert all(r["status"] == "ok" for r in after)
    assert (cfg.results_dir / "mini" / "summary.md").read_text().count("| ok") == 3


def test_ui_on_a_port_in_use_says_so(write_config, capsys):
    path = write_config(SUITE)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["ui", "--config", str(path), "--port", str(port)]) != 0
    assert f"port {port} is in use; pass --port" in capsys.readouterr().err
