"""Executors run jobs and hand each result to a callback as soon as it is known."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.plan import Job

OnResult = Callable[[Job, dict[str, Any]], None]


def failed_result(job: Job, error: str, trace: str = "") -> dict[str, Any]:
    """The result row of a job that could not report for itself (its worker died, say)."""
    return {"key": job.key, "job_id": job.job_id, "suite": job.suite, "label": job.label,
            "model": job.model, "task": job.task, "seed": job.seed, "order": job.extra.get("order", 0),
            "phases": list(job.phases), "status": "failed", "error": error, "traceback": trace}
