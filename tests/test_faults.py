"""Faults: a worker killed mid-training is retried and resumes; SIGINT keeps completed results."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from bench.config import load_config
from bench.results import read_json
from bench.suite import run_suite

pytestmark = [pytest.mark.java, pytest.mark.slow]

TRAINING = """
tracking: {{kind: none}}
executor: {{kind: {executor}, max_retries: 2}}
suites:
  mini:
    tasks: [shapes]
    train: {{epochs: 4, batch_size: 4, lr: 1.0e-3}}
    models: [{models}]
"""


def _wait_for(predicate, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError("condition not met in time")


def test_a_killed_worker_is_retried_and_resumes_to_the_same_scores(write_config, tmp_path):
    import ray

    reference_cfg = load_config(write_config(TRAINING.format(executor="local", models="vit-gpt2-tiny")),
                                [f"results_dir={tmp_path / 'reference'}"])
    reference = run_suite(reference_cfg, "mini", echo=lambda _: None)[0]

    cfg = load_config(write_config(TRAINING.format(executor="ray", models="vit-gpt2-tiny")))
    job_dir = cfg.results_dir / "mini" / reference["job_id"]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        import threading

        killed = {}

        def killer():
            checkpoint = job_dir / "train_state" / "checkpoint.pt"
            _wait_for(checkpoint.is_file)  # epoch 1 done: now kill during epoch 2
            pid = read_json(job_dir / "worker.json")["pid"]
            os.kill(pid, signal.SIGKILL)
            killed["pid"] = pid

        thread = threading.Thread(target=killer)
        thread.start()
        result = run_suite(cfg, "mini", echo=lambda _: None)[0]
        thread.join()
    finally:
        ray.shutdown()
    assert killed, "the worker was never killed"
    assert result["status"] == "ok"
    assert read_json(job_dir / "worker.json")["pid"] != killed["pid"]  # a new worker finished it
    train = read_json(job_dir / "train.json")
    assert train["resumed_from_epoch"] >= 1 and train["epochs_done"] == 4
    assert result["metrics"]["CIDEr"] == pytest.approx(reference["metrics"]["CIDEr"], abs=1e-9)
    assert read_json(job_dir / "captions.json") == read_json(
        tmp_path / "reference" / "mini" / reference["job_id"] / "captions.json")


class Console:
    """A driver process's output, read as it comes, so a test waits for what the process says it did."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.lines = proc, []
        self.reader = threading.Thread(target=lambda: self.lines.extend(iter(proc.stdout.readline, "")))
        self.reader.start()

    def said(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def text(self) -> str:
        self.reader.join(timeout=5)
        return "".join(self.lines)


def _start_driver(path, *extra: str) -> subprocess.Popen:
    # Python installs its Ctrl-C handler only where SIGINT is not ignored at start, and an ignored
    # SIGINT is inherited: install it explicitly, as an interactive shell's child would have it.
    start = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
             "sys.argv[0] = 'bench'; runpy.run_module('bench.cli', run_name='__main__', alter_sys=True)")
    command = [sys.executable, "-c", start, "run", "--suite", "mini", "--config", str(path), *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _stop_once(proc: subprocess.Popen, console: Console, sig: int) -> str:
    """Send `sig` until the driver says it is stopping (a signal landing in a library's own handler can be
    lost), then wait for it however long its summary takes: a slow machine is not a lost signal."""
    for _ in range(10):
        proc.send_signal(sig)
        try:
            _wait_for(lambda: console.said("interrupted") or proc.poll() is not None, timeout=30)
            break
        except TimeoutError:
            continue
    proc.wait(timeout=900)
    return console.text()


def test_sigint_keeps_completed_results_and_a_rerun_finishes_the_rest(write_config):
    path = write_config(TRAINING.format(
        executor="local",
        models="{name: vit-gpt2-tiny, label: quick, train: {epochs: 1}}, "
               "{name: vit-gpt2-tiny, label: slow, train: {epochs: 400}}"))  # interrupted long before the end
    cfg = load_config(path)
    proc = _start_driver(path)
    console = Console(proc)
    suite_dir = cfg.results_dir / "mini"
    _wait_for(lambda: any(suite_dir.glob("slow*/train_state/checkpoint.pt")), timeout=600)
    assert proc.poll() is None, "the suite ended before it could be interrupted"
    output = _stop_once(proc, console, signal.SIGINT)
    assert proc.returncode == 130, output
    statuses = {json.loads(p.read_text())["label"]: json.loads(p.read_text())["status"]
                for p in suite_dir.glob("*/result.json")}
    assert statuses == {"quick": "ok", "slow": "interrupted"}
    assert "quick" in (suite_dir / "summary.csv").read_text()

    messages = []
    run_suite(cfg, "mini", only=["quick"], echo=messages.append)
    assert "1 already finished, 0 to run" in messages[0]


def test_sigterm_stops_as_ctrl_c_marks_the_mlflow_run_killed_and_exits_143(write_config, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    path = write_config(TRAINING.format(
        executor="local",
        models="{name: vit-gpt2-tiny, label: quick, train: {epochs: 1}}, "
               "{name: vit-gpt2-tiny, label: slow, train: {epochs: 400}}"))
    cfg = load_config(path)
    proc = _start_driver(path, "--set", f"tracking.uri={uri}", "--set", "tracking.kind=mlflow")
    console = Console(proc)
    suite_dir = cfg.results_dir / "mini"
    _wait_for(lambda: any(suite_dir.glob("slow*/train_state/checkpoint.pt")), timeout=600)
    assert proc.poll() is None, "the suite ended before it could be stopped"
    output = _stop_once(proc, console, signal.SIGTERM)
    assert proc.returncode == 143, output
    assert "Traceback" not in output
    statuses = {json.loads(p.read_text())["label"]: json.loads(p.read_text())["status"]
                for p in suite_dir.glob("*/result.json")}
    assert statuses == {"quick": "ok", "slow": "interrupted"}
    client = MlflowClient(uri)
    parents = [r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
               if r.data.tags.get("bench.kind") == "suite"]
    assert [r.info.status for r in parents] == ["KILLED"]
