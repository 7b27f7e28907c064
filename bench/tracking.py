"""Tracking: result files are the truth; MLflow is the browsable mirror, written by the driver only.

The driver creates (and so migrates) the store, the experiment and one parent run per invocation, then
logs one nested child run per job as its result arrives: params = the resolved job and its hash,
metrics = scores (and sweeps as stepped series), artifacts = captions, scores and logs. Workers never
touch the store, so concurrent jobs cannot race on a fresh SQLite schema or lock it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from bench.config import TrackingConfig
from bench.plan import Job

ARTIFACTS = ("job.json", "result.json", "train.json", "captions.json", "scores.json", "sweep.json",
             "latency.json", "errprop.json", "system_metrics.json", "log.txt")


class Tracker(Protocol):
    def start(self, suite: str, params: dict[str, Any]) -> None: ...
    def log_job(self, job: Job, result: dict[str, Any], cached: bool = False) -> None: ...
    def log_artifact(self, path: Path) -> None: ...
    def finish(self, status: str) -> None: ...


class NullTracker:
    """Tracks nothing (tests, `tracking.kind: none`)."""

    def start(self, suite: str, params: dict[str, Any]) -> None:
        pass

    def log_job(self, job: Job, result: dict[str, Any], cached: bool = False) -> None:
        pass

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
        return f"sqlite:///{path}"
    return uri


def flatten(prefix: str, value: Any, out: dict[str, str]) -> dict[str, str]:
    if isinstance(value, dict):
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = json.dumps(value) if isinstance(value, list | tuple) else str(value)
    return out


class MlflowTracker:
    def __init__(self, config: TrackingConfig, results_dir: Path):
        self.uri = resolve_uri(config.uri, results_dir)
        self.experiment_template = config.experiment
        self.artifact_root = (results_dir / "mlartifacts").resolve()
        self.parent_id: str | None = None

    def start(self, suite: str, params: dict[str, Any]) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        mlflow.set_tracking_uri(self.uri)
        self.client = MlflowClient(self.uri)  # first use of a fresh SQLite store migrates it, here
        name = self.experiment_template.format(suite=suite)
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            self.experiment_id = self.client.create_experiment(
                name, artifact_location=(self.artifact_root / suite).as_uri(),
                tags={"mlflow.experimentKind": "custom_model_development"})  # runs, not GenAI traces
        else:
            self.experiment_id = experiment.experiment_id
        run = self.client.create_run(self.experiment_id, run_name=f"{suite}",
                                     tags={"bench.suite": suite, "bench.kind": "suite"})
        self.parent_id = run.info.run_id
        self._log_params(self.parent_id, flatten("", params, {}))

    def _log_params(self, run_id: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k[:250], v[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i: i + 100])

    def log_job(self, job: Job, result: dict[str, Any], cached: bool = False) -> None:
        from mlflow.entities import Metric

        assert self.parent_id, "start() first"
        status = result.get("status", "failed")
        run = self.client.create_run(
            self.experiment_id, run_name=job.job_id,
            tags={"mlflow.parentRunId": self.parent_id, "bench.suite": job.suite, "bench.model": job.model,
                  "bench.label": job.label, "bench.task": job.task, "bench.status": status,
                  "bench.cached": str(cached).lower(), "bench.key": job.key},
        )
        run_id = run.info.run_id
        identity = job.identity()
        self._log_params(run_id, flatten("", {**identity, "key": job.key, "label": job.label}, {}))
        now = 0
        metrics = [Metric(k, float(v), now, 0) for k, v in result.get("metrics", {}).items()
                   if isinstance(v, int | float)]
        for extra in ("parameters", "train_seconds", "seconds"):
            if isinstance(result.get(extra), int | float):
                metrics.append(Metric(extra, float(result[extra]), now, 0))
        metrics += self._sweep_metrics(job.dir / "sweep.json")
        metrics += self._system_metrics(job.dir / "system_metrics.json")
        for i in range(0, len(metrics), 500):
            self.client.log_batch(run_id, metrics=metrics[i: i + 500])
        if result.get("error"):
            self.client.set_tag(run_id, "bench.error", result["error"][:5000])
        for name in ARTIFACTS:
            if (job.dir / name).is_file():
                self.client.log_artifact(run_id, str(job.dir / name))
        self.client.set_terminated(run_id, "FINISHED" if status == "ok" else "FAILED")

    @staticmethod
    def _sweep_metrics(path: Path) -> list:
        from mlflow.entities import Metric

        if not path.is_file():
            return []
        out = []
        for row in json.loads(path.read_text()):
            if isinstance(row["value"], int | float):
                for metric, value in row["corpus"].items():
                    out.append(Metric(f"sweep_{row['knob']}.{metric}", float(value), 0, int(row["value"])))
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
            self.client.set_terminated(self.parent_id, status)


def make_tracker(config: TrackingConfig, results_dir: Path) -> Tracker:
    return MlflowTracker(config, results_dir) if config.kind == "mlflow" else NullTracker()
