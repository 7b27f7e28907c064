"""The driver of `bench run`: plan, skip what is finished, execute, track, summarise."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import files
from bench.config import BenchConfig, ConfigError
from bench.derived import repair
from bench.lock import suite_lock
from bench.plan import Job, plan_suite
from bench.results import RESULT, collect, finished, read_json, read_result, write_summary
from bench.tracking import Tracker, make_tracker


def _absolute(cfg: BenchConfig) -> Path:
    # Workers may run in another working directory: they get absolute paths only.
    return cfg.results_dir if cfg.results_dir.is_absolute() else (Path.cwd() / cfg.results_dir)


def make_executor(cfg: BenchConfig):
    if cfg.executor.kind == "local":
        from bench.executors.local import LocalExecutor

        return LocalExecutor(cfg.executor)
    from bench.executors.ray import RayExecutor

    cache = os.environ.get("BENCH_CACHE", ".cache")
    from bench.numerics import worker_env

    # The numerics mode's variables reach every worker before it imports torch (bench/numerics.py).
    env = {"BENCH_CACHE": str(Path(cache).resolve()), **worker_env()}
    for name in ("BENCH_WEIGHTS_DIR", "HF_HOME", "HF_HUB_OFFLINE", "COCO_ROOT", "FLICKR30K_ROOT",
                 "FLICKR8K_ROOT", "NOCAPS_ROOT"):
        if name in os.environ:
            env[name] = os.environ[name]
    return RayExecutor(cfg.executor, env)


def _longest_first(jobs: list[Job]) -> list[Job]:
    """Training jobs before the rest, so quick jobs fill the last idle workers (tables keep suite order)."""
    from bench.registry import captioner_class

    def quick(job: Job) -> bool:
        return "train" not in job.phases or not captioner_class(job.model).trainable

    return sorted(jobs, key=quick)  # stable: suite order within each group


def plan_absolute(cfg: BenchConfig, suite_name: str, only: list[str] | None = None) -> tuple[list[Job], list[Job]]:
    """(every job of the suite, the jobs `only` selects), with absolute paths and the suite's row order.

    The whole plan decides what the summary and the report hold, whatever subset this invocation runs.
    """
    results_dir = _absolute(cfg)
    every = [replace(job, results_dir=str(results_dir), extra={"order": i})
             for i, job in enumerate(plan_suite(cfg, suite_name))]
    if not only:
        return every, every
    keys = {job.key for job in plan_suite(cfg, suite_name, only)}
    return every, [job for job in every if job.key in keys]


def _suite_results(suite_dir: Path, every: list[Job], known: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every result of the suite's plan on disk, overlaid with those this run knows (a dead worker's
    failed row exists only in memory), in plan order."""
    quiet = lambda _: None  # noqa: E731 - damaged jobs are named once, when the run starts
    by_id = {r.get("job_id"): r for r in collect(suite_dir, {j.key for j in every}, quiet)}
    by_id.update({r.get("job_id"): r for r in known.values()})
    from bench.score import scored_results  # caption files scored with `bench score` join as rows

    return [by_id[j.job_id] for j in every if j.job_id in by_id] + scored_results(suite_dir)


def _invocation(only: list[str] | None, force: bool) -> dict[str, str]:
    return {"only": ",".join(only or []), "force": "true" if force else ""}


def run_suite(cfg: BenchConfig, suite_name: str, force: bool = False, only: list[str] | None = None,
              echo=print) -> list[dict[str, Any]]:
    """Run a suite; returns the results of its selected jobs (skipped ones included).

    Holds the suite folder's lock throughout; writes summary files and the report over every finished
    job of the suite, not only the selected ones.
    """
    from bench.numerics import apply

    apply(cfg.numerics)  # before planning imports torch (bench/cli.py applies it earlier still)
    every, jobs = plan_absolute(cfg, suite_name, only)
    suite_dir = _absolute(cfg) / suite_name
    with suite_lock(suite_dir):
        tracker = make_tracker(cfg.tracking, _absolute(cfg), warn=echo)
        tracker.start(suite_name, {"suite": cfg.suite(suite_name).model_dump(mode="json"),
                                   "executor": cfg.executor.model_dump(mode="json")},
                      _invocation(only, force))
        return _run_locked(cfg, suite_name, every, jobs, tracker, force, echo)


def _run_locked(cfg: BenchConfig, suite_name: str, every: list[Job], jobs: list[Job], tracker: Tracker,
                force: bool, echo) -> list[dict[str, Any]]:
    suite_dir = _absolute(cfg) / suite_name
    results: dict[str, dict[str, Any]] = {}
    todo: list[Job] = []
    for job in jobs:
        previous = None if force else finished(job.dir)
        if previous is None and not force and (job.dir / RESULT).is_file():
            read_result(job.dir / RESULT, echo)  # names a damaged one; it is redone like an unfinished job
        if previous is not None:
            results[job.key] = previous
            tracker.log_job(job, previous, cached=True)
        else:
            if force and job.dir.exists():
                shutil.rmtree(job.dir)
            todo.append(job)
            if not force and (redo := repair(job.dir)):
                echo(f"{job.job_id}: damaged output(s) {', '.join(redo)}: redone")
    echo(f"suite {suite_name}: {len(jobs)} job(s), {len(jobs) - len(todo)} already finished, "
         f"{len(todo)} to run ({cfg.executor.kind} executor)")
    started = time.time()
    status = "FAILED"
    from bench.progress import SuiteProgress

    progress = SuiteProgress(len(todo), echo, jobs=todo)  # a live view on a terminal; each note once per run

    def on_result(job: Job, result: dict[str, Any]) -> None:
        results[job.key] = result
        try:
            write_summary(suite_dir, _suite_results(suite_dir, every, results))
        except OSError as err:  # a full disk: the next job may still fit, and the summary is rewritten
            echo(f"warning: summary not written: {err}")
        state = str(result.get("status", "failed"))
        mark = "ok" if state == "ok" else f"{state.upper()} ({result.get('error', '')[:200]})"
        progress.echo(f"[{len(results)}/{len(jobs)}] {job.label} on {job.task} (seed {job.seed}): {mark}")
        progress.job_done(job, result)
        tracker.log_job(job, result)

    from bench.signals import second_signal_exits

    try:
        make_executor(cfg).run(_longest_first(todo), on_result)
        status = "FINISHED"
    except KeyboardInterrupt as err:
        progress.close()
        status = "KILLED"
        echo(f"interrupted ({err or 'Ctrl-C'}): completed results are kept; rerun the same command to finish "
             f"the rest (press Ctrl-C again to exit at once)")
        with second_signal_exits():
            _summarise(suite_dir, _suite_results(suite_dir, every, results), tracker, started, echo,
                       cfg.suite(suite_name).verdict_models, primary=cfg.suites[suite_name].compare.primary)
            tracker.finish(status)
        raise
    finally:
        progress.close()
        if status != "KILLED":
            _summarise(suite_dir, _suite_results(suite_dir, every, results), tracker, started, echo,
                       cfg.suite(suite_name).verdict_models, primary=cfg.suites[suite_name].compare.primary)
            tracker.finish(status)
    return [results[j.key] for j in jobs if j.key in results]


def _summarise(suite_dir: Path, ordered: list[dict[str, Any]], tracker: Tracker, started: float,
               echo, verdict_models: list[str] | None = None, primary: list[str] | None = None) -> None:
    """summary.csv/.md and the report over the whole suite, mirrored to the suite's run."""
    table = write_summary(suite_dir, ordered) if ordered else ""
    tracker.log_artifact(suite_dir / files.SUMMARY_MD)
    tracker.log_artifact(suite_dir / files.SUMMARY_CSV)
    if ordered:
        from bench.derived import discard, job_set, record, report_files

        made_from = job_set(suite_dir, ordered)
        try:  # after the jobs: seeds' mean and spread, paired comparisons (bench/compare.py)
            from bench.compare import compare_suite

            paths = compare_suite(suite_dir, ordered, echo=echo, **({"primary": primary} if primary else {}))
            record(suite_dir, [p.name for p in paths], made_from)
            for path in paths:
                tracker.log_artifact(path)
        except Exception as err:  # noqa: BLE001 - a comparison failure must not cost the results
            # none of another job set survives a failure (unchanged inputs were reused, not removed first:
            # bench/compare.py keeps seeds.json and comparisons.json whose input digest matches)
            discard(suite_dir)
            echo(f"warning: paired comparisons not written: {type(err).__name__}: {err}")
        discard(suite_dir, report_files(suite_dir))
        try:
            from bench.report import build_report

            paths = build_report(suite_dir, ordered, verdict_models=verdict_models)
            record(suite_dir, [str(p.relative_to(suite_dir)) for p in paths], made_from)
            for path in paths:
                tracker.log_artifact(path)
        except Exception as err:  # noqa: BLE001 - a report failure must not hide the suite's outcome
            echo(f"report not written: {type(err).__name__}: {err}")
    if table:
        echo("\n" + table)
        echo(f"wrote {suite_dir / files.SUMMARY_CSV} and {files.SUMMARY_MD} ({time.time() - started:.0f}s)")


def track_suite(cfg: BenchConfig, suite_name: str, echo=print) -> dict[str, Any]:
    """Mirror into MLflow every result of the suite that the store lacks (after an outage, or a run with
    `tracking.kind: none`). Returns the counts: mirrored now, already there, jobs without a result, and
    the tracking problem that stopped it (None when none did)."""
    if cfg.tracking.kind == "none":
        raise ConfigError("tracking.kind is none: there is no store to mirror into (set tracking.kind=mlflow)")
    every, _ = plan_absolute(cfg, suite_name)
    suite_dir = _absolute(cfg) / suite_name
    with suite_lock(suite_dir):
        tracker = make_tracker(cfg.tracking, _absolute(cfg), warn=echo)
        tracker.start(suite_name, {"suite": cfg.suite(suite_name).model_dump(mode="json")}, {"command": "track"})
        mirrored = present = missing = 0
        for job in every:
            try:
                result = read_json(job.dir / RESULT)
            except (OSError, ValueError):
                missing += 1
                continue
            if tracker.log_job(job, result, cached=True):
                mirrored += 1
            else:
                present += 1
        tracker.log_artifact(suite_dir / files.SUMMARY_CSV)
        tracker.finish("FINISHED")
    return {"mirrored": mirrored, "present": present, "missing": missing,
            "problem": getattr(tracker, "broken", None)}
