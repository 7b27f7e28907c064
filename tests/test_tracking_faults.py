"""Tracking never costs a result: a dead store fails fast at start, a store lost mid-run is a warning,
reruns do not duplicate child runs, and `bench track` mirrors what the store lacks."""

from __future__ import annotations

import socket
import time

from bench.cli import main
from bench.config import load_config
from bench.suite import run_suite
from tests.fakes import use_instant_executor

SUITE = """
executor: {{kind: local}}
tracking: {{kind: {kind}, uri: "{uri}", experiment: "t/{{suite}}"}}
suites:
  mini: {{tasks: [shapes], models: [constant, nearest-neighbour]}}
"""


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket closes


def runs(uri: str, experiment: str = "t/mini"):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    parents = [r for r in found if r.data.tags.get("bench.kind") == "suite"]
    children = [r for r in found if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def test_unreachable_store_fails_fast_naming_the_key(write_config, capsys):
    uri = f"http://127.0.0.1:{closed_port()}"
    path = write_config(SUITE.format(kind="mlflow", uri=uri))
    started = time.monotonic()
    code = main(["run", "--suite", "mini", "--config", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and time.monotonic() - started < 30
    assert "tracking.uri" in err and uri in err and "--set tracking.kind=none" in err
    assert "Traceback" not in err
    assert not list((path.parent / "results" / "mini").glob("*/result.json"))  # no job ran


def test_reruns_add_no_child_runs_and_parents_are_told_apart(write_config, tmp_path, monkeypatch):
    executor = use_instant_executor(monkeypatch)
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    cfg = load_config(write_config(SUITE.format(kind="mlflow", uri=uri)))
    for _ in range(3):
        run_suite(cfg, "mini", echo=lambda _: None)
        time.sleep(1.0)  # parent names carry the start time to the second
    assert executor.ran == ["constant", "nearest-neighbour"]
    parents, children = runs(uri)
    assert len(children) == 2 and len(parents) == 3
    assert len({p.info.run_name for p in parents}) == 3
    assert all(p.info.run_name.startswith("mini 20") for p in parents)
    assert sorted(c.data.tags["bench.label"] for c in children) == ["constant", "nearest-neighbour"]

    # A forced rerun of one model is a new result: one more child, under a parent that says so.
    run_suite(cfg, "mini", force=True, only=["constant"], echo=lambda _: None)
    parents, children = runs(uri)
    assert len(children) == 3 and len(parents) == 4
    forced = [p for p in parents if p.data.tags.get("bench.force") == "true"]
    assert len(forced) == 1 and forced[0].data.tags["bench.only"] == "constant"
    assert "only=constant force" in forced[0].info.run_name
    newest = [c for c in children if c.data.tags["mlflow.parentRunId"] == forced[0].info.run_id]
    assert [c.data.tags["bench.label"] for c in newest] == ["constant"]


def test_store_lost_mid_run_is_one_warning_and_results_stay(write_config, tmp_path, monkeypatch):
    executor = use_instant_executor(monkeypatch)
    from bench.tracking import MlflowTracker

    calls = []
    real = MlflowTracker.log_job

    def flaky(self, job, result, cached=False):
        calls.append(job.label)
        if len(calls) > 1:
            raise ConnectionError("Max retries exceeded with url: /api/2.0/mlflow/runs/create")
        return real(self, job, result, cached)

    monkeypatch.setattr(MlflowTracker, "log_job", flaky)
    monkeypatch.setattr(MlflowTracker, "log_artifact", lambda self, path: (_ for _ in ()).throw(OSError("gone")))
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    cfg = load_config(write_config(SUITE.format(kind="mlflow", uri=uri)))
    messages: list[str] = []
    results = run_suite(cfg, "mini", echo=messages.append)
    assert [r["status"] for r in results] == ["ok", "ok"]
    suite_dir = cfg.results_dir / "mini"
    assert len(list(suite_dir.glob("*/result.json"))) == 2
    assert (suite_dir / "summary.csv").read_text().count("\n") == 3
    assert executor.reports == [["constant", "nearest-neighbour"]]  # the report is still built
    warnings = [m for m in messages if m.startswith("warning: tracking")]
    assert len(warnings) == 1 and "ConnectionError" in warnings[0] and "bench track --suite mini" in warnings[0]

    # The store is back: `bench track` mirrors the job that is missing there, and only it.
    monkeypatch.undo()
    assert len(runs(uri)[1]) == 1
    code = main(["track", "--suite", "mini", "--config", str(tmp_path / "bench.yaml")])
    assert code == 0
    assert len(runs(uri)[1]) == 2
    assert main(["track", "--suite", "mini", "--config", str(tmp_path / "bench.yaml")]) == 0
    assert len(runs(uri)[1]) == 2


def test_track_mirrors_a_run_made_without_tracking(write_config, tmp_path, monkeypatch, capsys):
    use_instant_executor(monkeypatch)
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    path = write_config(SUITE.format(kind="none", uri=uri))
    run_suite(load_config(path), "mini", echo=lambda _: None)
    assert main(["track", "--suite", "mini", "--config", str(path), "--set", "tracking.kind=mlflow"]) == 0
    assert "2 result(s) mirrored now, 0 already in MLflow" in capsys.readouterr().out
    parents, children = runs(uri)
    assert len(children) == 2 and parents[0].data.tags["bench.command"] == "track"
    assert main(["track", "--suite", "mini", "--config", str(path)]) == 2  # kind none: nothing to mirror into
    assert "tracking.kind" in capsys.readouterr().err


def test_track_of_unreachable_store_is_a_config_error(write_config, capsys):
    path = write_config(SUITE.format(kind="mlflow", uri=f"http://127.0.0.1:{closed_port()}"))
    assert main(["track", "--suite", "mini", "--config", str(path)]) == 2
    assert "tracking.uri" in capsys.readouterr().err


def test_a_store_folder_that_cannot_be_made_is_a_config_error(write_config, tmp_path, capsys):
    (tmp_path / "a-file").write_text("not a folder")
    path = write_config(SUITE.format(kind="mlflow", uri=f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}"))
    assert main(["run", "--suite", "mini", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "tracking.uri" in err and "Traceback" not in err


def test_two_suites_create_one_fresh_store_at_once(tmp_path):
    """Two drivers on a fresh SQLite store: its creation (schema migration) is serialised, both start."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    code = ("import sys; from pathlib import Path; from bench.config import TrackingConfig; "
            "from bench.tracking import make_tracker; "
            f"t = make_tracker(TrackingConfig(uri={uri!r}, experiment='t/{{suite}}'), Path({str(tmp_path)!r})); "
            "t.start(sys.argv[1], {}); t.finish('FINISHED'); print('started')")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [subprocess.Popen([sys.executable, "-c", code, suite], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for suite in ("one", "two")]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert all(out.strip() == "started" for out, _ in outputs)
    assert len(runs(uri, "t/one")[0]) == 1 and len(runs(uri, "t/two")[0]) == 1


def test_track_that_loses_the_store_is_an_error(write_config, tmp_path, monkeypatch, capsys):
    use_instant_executor(monkeypatch)
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    path = write_config(SUITE.format(kind="none", uri=uri))
    run_suite(load_config(path), "mini", echo=lambda _: None)
    from bench.tracking import MlflowTracker

    def gone(self, job, result, cached=False):
        raise ConnectionError("connection refused")

    monkeypatch.setattr(MlflowTracker, "log_job", gone)
    assert main(["track", "--suite", "mini", "--config", str(path), "--set", "tracking.kind=mlflow"]) == 1
    captured = capsys.readouterr()
    assert "tracking failed after 0 result(s) were mirrored: ConnectionError" in captured.err
    assert "Traceback" not in captured.err + captured.out
