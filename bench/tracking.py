"""Tracking: result files are the truth; MLflow is the browsable mirror, written by the driver only.

The driver checks the store (seconds, not MLflow's minutes of retries), creates (and so migrates) it,
the experiment and one parent run per invocation, named by suite, start time and flags. Each job result
becomes one child run, tagged with the job's key and a digest of its result.json: a rerun that skips a job
finds that run instead of adding another, so the UI shows each job once per result. params = the resolved
job and its hash, metrics = scores (and sweeps as stepped series), artifacts = captions, scores and logs.
Workers never touch the store, so concurrent jobs cannot race on a fresh SQLite schema or lock it.
After the start-up check, a tracking failure is a warning: the result files are the record, and
`bench track` (or the next run) mirrors whatever the store lacks. What the UI opens on (the shared
view, the job runs' datasets, the parent run's verdict and answer) is bench/mlflow_view.py's.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from bench import files
from bench.api import stable_hash
from bench.config import ConfigError, TrackingConfig
from bench.plan import Job

ARTIFACTS = (files.JOB, files.RESULT, files.TRAIN, files.CAPTIONS, files.SCORES, files.SWEEP,
             files.LATENCY, files.ERRPROP, files.DIVERSITY, files.SYSTEM_METRICS, files.LOG)


class Tracker(Protocol):
    def start(self, suite: str, params: dict[str, Any], invocation: dict[str, str] | None = None) -> None: ...
    def log_job(self, job: Job, result: dict[str, Any], cached: bool = False) -> bool: ...
    def log_artifact(self, path: Path) -> None: ...
    def finish(self, status: str) -> None: ...


class NullTracker:
    """Tracks nothing (tests, `tracking.kind: none`)."""

    def start(self, suite: str, params: dict[str, Any], invocation: dict[str, str] | None = None) -> None:
        pass

    def log_job(self, job: Job, result: dict[str, Any], cached: bool = False) -> bool:
        return False

    def log_artifact(self, path: Path) -> None:
        pass

    def finish(self, status: str) -> None:
        pass


def resolve_uri(uri: str, results_dir: Path) -> str:
    """Expand {results_dir}; make a relative SQLite path absolute and create its folder."""
    uri = uri.replace("{results_dir}", str(results_dir))
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_absolute():
            path = Path.cwd() / path
        path.parent.mkdir(parents=True, exist_ok=True)
        # SQLAlchemy reads '?' as the start of options and unquotes '%': quote those (and '#') in the path.
        quoted = str(path).replace("%", "%25").replace("?", "%3F").replace("#", "%23")
        return f"sqlite:///{quoted}"
    return uri


def flatten(prefix: str, value: Any, out: dict[str, str]) -> dict[str, str]:
    if isinstance(value, dict):
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = json.dumps(value) if isinstance(value, list | tuple) else str(value)
    return out


# Bounds on MLflow's HTTP client (by default it retries for minutes): a store that went away costs
# seconds per call, not minutes. Set only where the user has not chosen otherwise.
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
               "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
PROBE_SECONDS = 5.0


def result_digest(result: dict[str, Any]) -> str:
    """Identity of one result: the same result.json gives the same digest, read back or in memory."""
    return stable_hash(json.loads(json.dumps(result, default=str)), length=16)


def probe(uri: str, timeout: float = PROBE_SECONDS) -> None:
    """Fail within `timeout` seconds, with an error naming `tracking.uri`, if an HTTP store is unreachable.

    Any HTTP answer counts as reachable (the store's own calls report other problems); only a refused,
    unresolvable or silent server fails here.
    """
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout).close()
    except urllib.error.HTTPError:
        return
    except (OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise ConfigError(unreachable(uri, f"no answer within {timeout:g}s ({reason})")) from None


def unreachable(uri: str, why: str) -> str:
    return (f"tracking.uri {uri!r}: the MLflow tracking store cannot be used: {why}. Start the server or fix "
            f"tracking.uri, or run without MLflow: --set tracking.kind=none (the result files are the record; "
            f"`bench track --suite S` mirrors them later)")


@contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Serialise the creation (schema migration) of a SQLite store between processes."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl
    from urllib.parse import unquote

    with open(unquote(uri.removeprefix("sqlite:///")) + ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes, or when the holder dies
        yield


class MlflowTracker:
    """One parent run per invocation; one child run per job result, created once and found afterwards."""

    def __init__(self, config: TrackingConfig, results_dir: Path):
        self.uri = resolve_uri(config.uri, results_dir)
        self.experiment_template = config.experiment
        self.artifact_root = (results_dir / "mlartifacts").resolve()
        self.results_dir = results_dir.resolve()
        self.parent_id: str | None = None
        for name, value in HTTP_LIMITS.items():
            os.environ.setdefault(name, value)

    def start(self, suite: str, params: dict[str, Any], invocation: dict[str, str] | None = None) -> None:
        """Check the store, then open the parent run: named by suite, start time and the invocation's flags."""
        probe(self.uri)
        from mlflow.tracking import MlflowClient

        # "Creating initial MLflow database tables..." is MLflow's business, not the suite's progress.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
        with _store_lock(self.uri):
            self.client = MlflowClient(self.uri)
            self.experiment_id = self._experiment(self.experiment_template.format(suite=suite), suite)
        self.report_dir = self.results_dir / suite / "report"
        from bench.mlflow_view import install_view

        install_view(self.client, self.experiment_id)  # what the printed link opens (bench/mlflow_view.py)
        invocation = {k: v for k, v in (invocation or {}).items() if v}
        words = [time.strftime("%Y-%m-%d %H:%M:%S")] + [f"{k}={v}" if v != "true" else k
                                                         for k, v in invocation.items()]
        tags = {"bench.suite": suite, "bench.kind": "suite", "bench.results_dir": str(self.results_dir),
                **{f"bench.{k}": v for k, v in invocation.items()}}
        self._close_abandoned(suite)
        run = self.client.create_run(self.experiment_id, run_name=" ".join([suite, *words]), tags=tags)
        self.parent_id = run.info.run_id
        self._log_params(self.parent_id, flatten("", params, {}))

    def _close_abandoned(self, suite: str) -> None:
        """Mark KILLED the parent runs of this suite and results folder still RUNNING: their driver died
        (SIGKILL, a second Ctrl-C, a lost node). The caller holds the suite folder's lock, so no live
        driver can own one. Runs of another results folder sharing the store are left alone."""
        running = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`bench.kind` = 'suite' AND tags.`bench.suite` = '{suite}' "
                                                f"AND attributes.status = 'RUNNING'")
        for run in running:
            if run.data.tags.get("bench.results_dir", str(self.results_dir)) == str(self.results_dir):
                self.client.set_tag(run.info.run_id, "bench.closed", "driver gone; closed by a later invocation")
                self.client.set_terminated(run.info.run_id, "KILLED")

    def _experiment(self, name: str, suite: str) -> str:
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        return self.client.create_experiment(
            name, artifact_location=(self.artifact_root / suite).as_uri(),
            tags={"mlflow.experimentKind": "custom_model_development"})  # runs, not GenAI traces

    def _log_params(self, run_id: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k[:250], v[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i: i + 100])

    def find_job(self, key: str, digest: str) -> str | None:
        """The run that mirrors this result completely, if one exists; half-written ones are deleted."""
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`bench.key` = '{key}' AND tags.`bench.result` = '{digest}'")
        found = None
        for run in runs:
            if found is None and run.data.tags.get("bench.mirrored") == "true":
                found = run.info.run_id
            elif run.data.tags.get("bench.mirrored") != "true":
                self.client.delete_run(run.info.run_id)  # a mirror interrupted half-way: redo it
        return found

    def log_job(self, job: Job, result: dict[str, Any], cached: bool = False) -> bool:
        """Mirror one job's result unless a run holds it already; True when a run was created."""
        assert self.parent_id, "start() first"
        digest = result_digest(result)
        if self.find_job(job.key, digest) is not None:
            return False
        status = result.get("status", "failed")
        run = self.client.create_run(
            self.experiment_id, run_name=job.job_id,
            tags={"mlflow.parentRunId": self.parent_id, "bench.suite": job.suite, "bench.model": job.model,
                  "bench.label": job.label, "bench.task": job.task, "bench.status": status,
                  "bench.cached": str(cached).lower(), "bench.key": job.key, "bench.result": digest,
                  "bench.kind": "job"},
        )
        run_id = run.info.run_id
        self._log_params(run_id, flatten("", {**job.identity(), "key": job.key, "label": job.label}, {}))
        from bench.mlflow_view import job_datasets

        datasets = job_datasets(job)
        if datasets:  # the UI's Dataset column and filter
            self.client.log_inputs(run_id, datasets=datasets)
        metrics = self._result_metrics(result)
        metrics += self._sweep_metrics(job.dir / files.SWEEP)
        metrics += self._system_metrics(job.dir / files.SYSTEM_METRICS)
        for i in range(0, len(metrics), 500):
            self.client.log_batch(run_id, metrics=metrics[i: i + 500])
        if result.get("error"):
            self.client.set_tag(run_id, "bench.error", result["error"][:5000])
        for name in ARTIFACTS:
            if (job.dir / name).is_file():
                self.client.log_artifact(run_id, str(job.dir / name))
        self.client.set_tag(run_id, "bench.mirrored", "true")
        self.client.set_terminated(run_id, "FINISHED" if status == "ok" else "FAILED")
        return True

    @staticmethod
    def _result_metrics(result: dict[str, Any]) -> list:
        from mlflow.entities import Metric

        from bench.results import with_scaled  # quality also as `<name>_x100`, the tables' scale

        metrics = [Metric(n, float(x), 0, 0) for k, v in result.get("metrics", {}).items()
                   if isinstance(v, int | float) for n, x in with_scaled(k, v)]
        for extra in ("parameters", "train_seconds", "seconds"):
            if isinstance(result.get(extra), int | float):
                metrics.append(Metric(extra, float(result[extra]), 0, 0))
        return metrics

    @staticmethod
    def _sweep_metrics(path: Path) -> list:
        from mlflow.entities import Metric

        from bench.results import with_scaled

        if not path.is_file():
            return []
        out = []
        for row in json.loads(path.read_text()):
            if isinstance(row["value"], int | float):
                for metric, value in row["corpus"].items():
                    for name, x in with_scaled(metric, float(value)):
                        out.append(Metric(f"sweep_{row['knob']}.{name}", x, 0, int(row["value"])))
        return out

    @staticmethod
    def _system_metrics(path: Path) -> list:
        from mlflow.entities import Metric

        if not path.is_file():
            return []
        out = []
        for step, row in enumerate(json.loads(path.read_text())):
            out += [Metric(f"system/{k}", float(v), 0, step) for k, v in row.items() if k != "t"]
        return out

    def log_artifact(self, path: Path) -> None:
        if self.parent_id and path.is_file():
            self.client.log_artifact(self.parent_id, str(path))

    def finish(self, status: str) -> None:
        if self.parent_id:
            from bench.mlflow_view import log_answer

            try:  # verdict, tables, figures and the description; the run is closed whatever happens
                log_answer(self.client, self.parent_id, self.report_dir)
            finally:
                self.client.set_terminated(self.parent_id, status)


class GuardedTracker:
    """A tracker whose failures never cost a result: the start-up check fails fast as a ConfigError
    naming `tracking.uri`; after it, the first failure prints one warning and mirroring stops for the
    rest of the invocation (the result files stay the record; a later run or `bench track` mirrors them).
    """

    def __init__(self, inner: Tracker, uri: str, warn: Callable[[str], None] = print):
        self.inner, self.uri, self.warn = inner, uri, warn
        self.broken: str | None = None

    def start(self, suite: str, params: dict[str, Any], invocation: dict[str, str] | None = None) -> None:
        self.suite = suite
        try:
            self.inner.start(suite, params, invocation)
        except ConfigError:
            raise
        except Exception as err:  # noqa: BLE001 - any failure to open the store is a setup problem
            raise ConfigError(unreachable(self.uri, _short(err))) from None

    def _guard(self, what: str, call: Callable[[], Any]) -> Any:
        if self.broken is not None:
            return None
        try:
            return call()
        except Exception as err:  # noqa: BLE001 - tracking is a mirror; the suite goes on without it
            self.broken = _short(err)
            self.warn(f"warning: tracking stopped ({what}: {self.broken}); the result files are complete, "
                      f"and `bench track --suite {self.suite}` or the next run mirrors what is missing")
            return None

    def log_job(self, job: Job, result: dict[str, Any], cached: bool = False) -> bool:
        return bool(self._guard(f"logging {job.label}", lambda: self.inner.log_job(job, result, cached)))

    def log_artifact(self, path: Path) -> None:
        self._guard(f"logging {path.name}", lambda: self.inner.log_artifact(path))

    def finish(self, status: str) -> None:
        self._guard("closing the suite's run", lambda: self.inner.finish(status))


def _short(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".strip()
    first = text.splitlines()[0] if text else type(err).__name__
    return first[:300]


def make_tracker(config: TrackingConfig, results_dir: Path, warn: Callable[[str], None] = print) -> Tracker:
    """The configured tracker, guarded (see GuardedTracker); NullTracker for `tracking.kind: none`."""
    if config.kind != "mlflow":
        return NullTracker()
    try:
        inner = MlflowTracker(config, results_dir)
    except OSError as err:  # the SQLite store's folder cannot be created
        raise ConfigError(unreachable(config.uri, _short(err))) from None
    return GuardedTracker(inner, inner.uri, warn)
