"""Executors run jobs and hand each result to a callback as soon as it is known.

Dependencies go one way: the executors import bench.runner (which runs a job's phases and writes its
result), never the reverse. `execute` decides how a job's phases run: in this process, or data-parallel
in Ray Train workers (bench/executors/ray_train.py) for a job with more than one worker.
"""

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


def execute(job: Job) -> dict[str, Any]:
    """Run `job` where the caller is (a Ray task or the driver): its phases in this process, or on
    `job.workers` Ray Train workers when it has more than one. Returns (and writes) its result."""
    from bench.runner import run_job

    if job.workers > 1:
        from bench.executors.ray_train import run_data_parallel

        return run_job(job, run_data_parallel)
    return run_job(job)
