"""Data-parallel jobs: Ray Train runs the job's phases in `workers` processes (TorchTrainer).

`run_data_parallel` is the phase runner `bench.executors.execute` hands to `bench.runner.run_job` for a
job with more than one worker, inside the Ray task the Ray executor started for it (or in-process under
the local executor, on a local Ray instance). It starts a TorchTrainer with one worker per share of the
job's resources (one GPU each, or CPU-only workers on the gloo backend), and every worker runs
`bench.runner.run_phases`: they train together (bench/train.py), caption their shards of the eval split
and gather them, and rank 0 scores the whole split once, measures latency and errprop, and writes the
files, `outcome.json` among them, which this function hands back to `run_job`.

Worker deaths are retried by Ray Train (`FailureConfig(max_failures)`, the executor's `max_retries`):
the new worker group resumes from the last epoch checkpoint, like a retried single-process job.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
from collections.abc import Callable
from typing import Any

from bench import files
from bench.plan import Job
from bench.results import read_json, write_json

OUTCOME = files.OUTCOME  # rank 0's phase outcome, read back by the calling task


def _forwarded_env() -> dict[str, str]:
    """The variables the workers need as this process sees them (dataset roots, caches, hub settings)."""
    return {k: v for k, v in os.environ.items()
            if k.startswith(("BENCH_", "HF_")) or k.endswith("_ROOT")}


def _worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: run every phase as rank `world_rank` of the job's process group."""
    os.chdir(config["cwd"])  # Ray Train starts workers in its run folder; relative paths mean the caller's
    import ray.train.torch

    from bench import distributed
    from bench.runner import JobLog, run_phases

    job: Job = config["job"]
    device = ray.train.torch.get_device()
    main = distributed.is_main()
    log: Callable[[str], None] = JobLog(job) if main else (lambda _message: None)
    if main:
        log(f"data-parallel: {distributed.world_size()} workers, rank 0 on {device}")
    out = run_phases(job, log, str(device))
    if main:
        write_json(job.dir / OUTCOME, out)


def _ensure_ray(job: Job) -> None:
    """Under the local executor nothing has started Ray yet: start a local instance that fits the job."""
    import logging

    import ray

    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        cpus = None if address else max(os.cpu_count() or 1, int(job.cpus + 0.999))
        ray.init(address=address, num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING)


def run_data_parallel(job: Job, log: Callable[[str], None]) -> dict[str, Any]:
    """Run `job` on `job.workers` Ray Train workers; returns rank 0's outcome of the phases."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    _ensure_ray(job)
    outcome = job.dir / OUTCOME
    outcome.unlink(missing_ok=True)  # never hand back a previous attempt's outcome
    per_worker: dict[str, float] = {"CPU": job.cpus / job.workers}
    if job.gpus > 0:
        per_worker["GPU"] = 1.0
    trainer = TorchTrainer(
        _worker,
        train_loop_config={"job": job, "cwd": os.getcwd()},
        scaling_config=ScalingConfig(num_workers=job.workers, use_gpu=job.gpus > 0,
                                     resources_per_worker=per_worker),
        run_config=RunConfig(
            name=job.job_id, storage_path=str((job.dir / "ray_train").absolute()),
            failure_config=FailureConfig(max_failures=int(job.extra.get("max_retries", 0))),
            worker_runtime_env={"env_vars": _forwarded_env()},
        ),
    )
    log(f"data-parallel job: Ray Train with {job.workers} workers, {per_worker} each")
    # fit() installs a SIGINT handler of its own (abort the run, then exit 0) and keeps it: put ours back,
    # so Ctrl-C still means "interrupted" to `bench run`.
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if main_thread else None
    try:
        trainer.fit()
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)
    if not outcome.is_file():
        raise RuntimeError(f"Ray Train finished but rank 0 left no {OUTCOME} in {job.dir}")
    out = read_json(outcome)
    outcome.unlink()  # result.json, written from it, is the record
    shutil.rmtree(job.dir / "ray_train", ignore_errors=True)  # Ray Train's run folder: nothing we use
    return out
