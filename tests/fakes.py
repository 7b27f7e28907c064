"""A fake executor for driver tests: each job 'finishes' at once with a result.json, no model, no Java."""

from __future__ import annotations

import time

from bench.results import write_json


class InstantExecutor:
    """Writes an ok result.json per job (its `seconds` differs per run, as a real rerun's would)."""

    def __init__(self, *args, **kwargs):
        self.ran: list[str] = []
        self.reports: list[list[str]] = []  # the labels of each report the driver built

    def run(self, jobs, on_result) -> None:
        for job in jobs:
            job.dir.mkdir(parents=True, exist_ok=True)
            result = {"key": job.key, "job_id": job.job_id, "suite": job.suite, "label": job.label,
                      "model": job.model, "task": job.task, "seed": job.seed, "order": job.extra["order"],
                      "phases": list(job.phases), "status": "ok", "metrics": {"CIDEr": 0.25},
                      "seconds": time.time()}
            write_json(job.dir / "result.json", result)
            self.ran.append(job.label)
            on_result(job, result)


def use_instant_executor(monkeypatch) -> InstantExecutor:
    """Route bench.suite's jobs to one InstantExecutor and skip the report (it needs real scores)."""
    executor = InstantExecutor()
    monkeypatch.setattr("bench.suite.make_executor", lambda cfg: executor)

    def build_report(suite_dir, results, *args, **kwargs):
        executor.reports.append([r["label"] for r in results])
        return []

    monkeypatch.setattr("bench.report.build_report", build_report)
    return executor
