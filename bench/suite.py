"""The driver of `bench run`: plan, skip what is finished, execute, track, summarise."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.config import BenchConfig
from bench.plan import Job, plan_suite
from bench.results import collect, finished, write_summary
from bench.tracking import make_tracker


def _absolute(cfg: BenchConfig) -> Path:
    # Workers may run in another working directory: they get absolute paths only.
    return cfg.results_dir if cfg.results_dir.is_absolute() else (Path.cwd() / cfg.results_dir)


def make_executor(cfg: BenchConfig):
    if cfg.executor.kind == "local":
        from bench.executors.local import LocalExecutor

        return LocalExecutor(cfg.executor)
    from bench.executors.ray import RayExecutor

    cache = os.environ.get("BENCH_CACHE", ".cache")
    env = {"BENCH_CACHE": str(Path(cache).resolve())}
    for name in ("BENCH_WEIGHTS_DIR", "HF_HOME", "HF_HUB_OFFLINE", "COCO_ROOT", "FLICKR30K_ROOT",
                 "FLICKR8K_ROOT"):
        if name in os.environ:
            env[name] = os.environ[name]
    return RayExecutor(cfg.executor, env)


def _longest_first(jobs: list[Job]) -> list[Job]:
    """Training jobs before the rest, so quick jobs fill the last idle workers (tables keep suite order)."""
    from bench.registry import captioner_class

    def quick(job: Job) -> bool:
        return "train" not in job.phases or not captioner_class(job.model).trainable

    return sorted(jobs, key=quick)  # stable: suite order within each group


def run_suite(cfg: BenchConfig, suite_name: str, force: bool = False, only: list[str] | None = None,
              echo=print) -> list[dict[str, Any]]:
    """Run a suite; returns the results of its jobs (skipped ones included). Writes summary files."""
    results_dir = _absolute(cfg)
    jobs = [replace(job, results_dir=str(results_dir), extra={"order": i})
            for i, job in enumerate(plan_suite(cfg, suite_name, only))]
    suite_dir = results_dir / suite_name
    tracker = make_tracker(cfg.tracking, results_dir)
    tracker.start(suite_name, {"suite": cfg.suite(suite_name).model_dump(mode="json"),
                               "executor": cfg.executor.model_dump(mode="json")})
    results: dict[str, dict[str, Any]] = {}
    todo: list[Job] = []
    for job in jobs:
        previous = None if force else finished(job.dir)
        if previous is not None:
            results[job.key] = previous
            tracker.log_job(job, previous, cached=True)
        else:
            if force and job.dir.exists():
                shutil.rmtree(job.dir)
            todo.append(job)
    echo(f"suite {suite_name}: {len(jobs)} job(s), {len(jobs) - len(todo)} already finished, "
         f"{len(todo)} to run ({cfg.executor.kind} executor)")
    started = time.time()
    status = "FAILED"

    def on_result(job: Job, result: dict[str, Any]) -> None:
        results[job.key] = result
        tracker.log_job(job, result)
        write_summary(suite_dir, [results[j.key] for j in jobs if j.key in results])
        mark = "ok" if result.get("status") == "ok" else f"FAILED ({result.get('error', '')[:200]})"
        echo(f"[{len(results)}/{len(jobs)}] {job.label} on {job.task} (seed {job.seed}): {mark}")

    try:
        make_executor(cfg).run(_longest_first(todo), on_result)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        echo("interrupted: completed results are kept; rerun the same command to finish the rest")
        raise
    finally:
        ordered = collect(suite_dir, {j.key for j in jobs})
        table = write_summary(suite_dir, ordered) if ordered else ""
        tracker.log_artifact(suite_dir / "summary.md")
        tracker.log_artifact(suite_dir / "summary.csv")
        if ordered:
            try:
                from bench.report import build_report

                for path in build_report(suite_dir, ordered):
                    tracker.log_artifact(path)
            except Exception as err:  # noqa: BLE001 - a report failure must not hide the suite's outcome
                echo(f"report not written: {type(err).__name__}: {err}")
        tracker.finish(status)
        if table:
            echo("\n" + table)
            echo(f"wrote {suite_dir / 'summary.csv'} and summary.md ({time.time() - started:.0f}s)")
    return [results[j.key] for j in jobs if j.key in results]
