"""Run one job inside a worker: build the task and the captioner, train, caption, score, write results.

Each phase's output is written atomically before the next starts, and a phase whose output exists is not
redone, so a job that died after training resumes at captioning. An exception in building, training or
eval becomes a failed result.json with the error and traceback; the caller's other jobs go on.

The phases after eval (latency, errprop, diversity) run each in isolation: one that raises is recorded under
`phase_errors` (type, message, traceback) and the job ends `partial`, keeping its scores and every other
phase's output in result.json. `partial` is not finished (bench/results.py `finished`), so the next run
of the suite takes the job up again and redoes only what has no output file yet: the failed phase.

A job with more than one worker runs its phases in Ray Train workers (bench/executors/ray_train.py):
every rank runs `run_phases`, rank 0 alone writes files, scores, and measures latency and errprop.

An executor may defer phases (`job.extra["defer"]`, e.g. ["latency"], to run them later where no other
job shares the machine): the phases named are skipped and the result is `partial` (not finished, so a
rerun completes it); running the job again without `defer` finds the other phases' files, redoes none
of them, runs the deferred ones, and writes the complete result.json.
"""

from __future__ import annotations

import os
import shutil
import time
import traceback
from collections.abc import Callable
from typing import Any

from bench import files
from bench.joblogs import library_logs_to
from bench.plan import Job
from bench.results import RESULT, read_json, write_json
from bench.sysmon import SystemMonitor


class JobLog:
    """Prints with the job's label and appends to the job's log.txt."""

    def __init__(self, job: Job):
        self.prefix = f"[{job.label}/{job.task}/s{job.seed}]"
        self.path = job.dir / files.LOG

    def __call__(self, message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {self.prefix} {message}"
        print(line, flush=True)
        try:
            with self.path.open("a") as f:
                f.write(line + "\n")
        except OSError:  # a full disk must not turn a job's log line into its failure: the console has it
            pass


def mark_phase(job: Job, name: str) -> None:
    """Say which phase the job is in (job.dir/.phase), for the driver's live view; never fails the job."""
    try:
        (job.dir / files.PHASE).write_text(name)
    except OSError:
        pass


def pick_device(job: Job) -> str:
    """The device of a single-process job (a data-parallel worker gets its device from Ray Train)."""
    import torch

    if job.gpus > 0:
        if not torch.cuda.is_available():
            raise RuntimeError(f"job asks for {job.gpus} GPU(s) but torch sees no CUDA device here")
        return "cuda"
    return "cpu"


PhaseRunner = Callable[[Job, Callable[[str], None]], dict[str, Any]]


def run_job(job: Job, phases: PhaseRunner | None = None) -> dict[str, Any]:
    """Run every phase of `job`; always returns (and writes) a result dict, failed or ok.

    `phases(job, log)` runs them and returns their outcome; by default they run in this process. The
    executors choose (bench/executors/__init__.py `execute`): they pass Ray Train's data-parallel runner
    (bench/executors/ray_train.py) for a job with more than one worker. This module imports no executor.
    """
    job.dir.mkdir(parents=True, exist_ok=True)
    write_json(job.dir / files.JOB, job.to_dict())
    log = JobLog(job)
    result: dict[str, Any] = {
        "key": job.key, "job_id": job.job_id, "suite": job.suite, "label": job.label,
        "model": job.model, "task": job.task, "seed": job.seed, "order": job.extra.get("order", 0),
        "phases": list(job.phases), "status": "running", "host": os.uname().nodename,
    }
    started = time.time()
    earlier = _partial(job)  # a first step that ran every phase but the deferred ones
    if not earlier:
        write_json(job.dir / files.WORKER, {"pid": os.getpid(), "host": result["host"], "started": started})
    monitor = SystemMonitor(interval=job.extra.get("sysmon_interval", 5.0))
    deferred = [p for p in job.extra.get("defer", ()) if p in job.phases]
    try:
        with monitor, library_logs_to(log.path):
            result.update((phases or _run_phases)(job, log))
        errors = result.get("phase_errors", {})
        result["status"] = "partial" if deferred or errors else "ok"
        if deferred:
            result["deferred"] = deferred
        if errors:
            result["error"] = "; ".join(f"{name} phase: {e['type']}: {e['message']}" for name, e in errors.items())
    except BaseException as err:  # noqa: BLE001 - a job's failure is data, not a crash of the suite
        result.update(status="failed", error=_error_text(err, job), traceback=traceback.format_exc())
        log(f"FAILED: {type(err).__name__}: {err}")
        if isinstance(err, KeyboardInterrupt | SystemExit):
            result["status"] = "interrupted"
            write_json(job.dir / RESULT, {**result, "seconds": time.time() - started})
            raise
    finally:
        _write_quietly(job.dir / files.SYSTEM_METRICS, earlier.get("system_metrics", []) + monitor.samples, log)
        (job.dir / files.PHASE).unlink(missing_ok=True)
    result["seconds"] = time.time() - started + earlier.get("seconds", 0.0)
    from bench.derived import output_digests

    result["outputs"] = output_digests(job.dir)  # a later change to any of them redoes the job
    _write_quietly(job.dir / RESULT, result, log)  # unwritten, the row still reaches the driver; a rerun redoes it
    return result


def _error_text(err: BaseException, job: Job) -> str:
    """The failed row's error: a full disk says so, with the size needed and the place where known."""
    from bench.space import NoSpace, no_space, space_error

    full = space_error(err)
    if full is None:
        return f"{type(err).__name__}: {err}"
    if not isinstance(full, NoSpace):
        full = no_space(full, full.filename or job.dir, None)
    return f"NoSpace: {full}"


def _write_quietly(path, payload: Any, log: Callable[[str], None]) -> None:
    """Write a job file; a failure (a full disk) is logged, never raised out of the job."""
    try:
        write_json(path, payload)
    except OSError as err:
        log(f"could not write {path.name}: {err}")


def _partial(job: Job) -> dict[str, Any]:
    """What a deferring first step of this job recorded (seconds, system metrics), else {}."""
    path = job.dir / RESULT
    try:
        previous = read_json(path) if path.is_file() else {}
    except ValueError:
        return {}
    if previous.get("status") != "partial" or not previous.get("deferred") or job.extra.get("defer"):
        return {}  # a partial job whose phase failed is rerun from scratch: its own time, its own worker
    metrics = job.dir / files.SYSTEM_METRICS
    return {"seconds": float(previous.get("seconds", 0.0)),
            "system_metrics": read_json(metrics) if metrics.is_file() else []}


def _now(job: Job, phase: str) -> bool:
    """Whether `phase` runs in this step: the job has it and the executor did not defer it."""
    return phase in job.phases and phase not in job.extra.get("defer", ())


def _run_phases(job: Job, log: Callable[[str], None]) -> dict[str, Any]:
    if job.workers > 1:  # one process would silently do the work of `workers`: the executor's choice
        raise ValueError(f"job {job.job_id} has {job.workers} workers: run it through an executor "
                         f"(bench.executors.execute), which starts its data-parallel workers")
    out = run_phases(job, log, pick_device(job))
    assert out is not None
    return out


def run_phases(job: Job, log: Callable[[str], None], device: str) -> dict[str, Any] | None:
    """Build, train, evaluate: the outcome on rank 0 (or in a single process), None on other ranks.

    In a data-parallel job every rank runs this with the same job; decisions that read shared files
    (is there a trained model?) are rank 0's, broadcast, so all ranks take the same path.
    """
    import torch

    from bench import distributed
    from bench.environment import capture
    from bench.numerics import configure_torch
    from bench.registry import captioner_class, create_captioner, create_task
    from bench.train import seed_everything, train

    configure_torch()  # deterministic algorithms in the reproducible mode; refuses a wrong path
    main = distributed.is_main()
    threads = int(job.train.get("threads") or max(1, round(job.cpus / job.workers)))
    torch.set_num_threads(threads)
    seed_everything(job.seed)
    with distributed.main_first():  # rank 0 generates or checks the data files before the others read
        task = create_task(job.task_class, **job.task_options)
        train_samples = task.samples("train")
    out: dict[str, Any] = {"device": device, "threads": threads, "workers": distributed.world_size(),
                           "train_images_missing": len(task.missing("train"))}
    out["environment"] = capture()  # what explains a difference between two runs (bench/environment.py)
    if out["train_images_missing"]:
        log(f"{out['train_images_missing']} train image(s) listed but missing: skipped")

    model_dir, train_file = job.dir / "model", job.dir / files.TRAIN
    cls = captioner_class(job.model)
    if distributed.broadcast("train" in job.phases and train_file.is_file() and model_dir.is_dir()):
        log("trained model found; loading it")
        captioner = cls.load(model_dir).to(device)
        out["train"] = read_json(train_file) if main else {}
    else:
        captioner = create_captioner(job.model, **job.overrides).to(device)
        mark_phase(job, "prepare")
        log(f"prepare on {len(train_samples)} training images")
        prepared = time.time()
        with distributed.main_first():  # prepare may download weights or fill a cache
            captioner.prepare(train_samples)
        captioner.to(device)  # prepare may build the network
        report: dict[str, Any] = {"prepare_seconds": time.time() - prepared}
        if "train" in job.phases and captioner.trainable:
            from bench.config import TrainConfig

            cfg = TrainConfig.model_validate(job.train)
            mark_phase(job, "train")
            log(f"train: {cfg.epochs} epoch(s), batch {cfg.batch_size}, lr {cfg.lr}, {device}")
            report.update(train(captioner, train_samples, cfg, job.dir / "train_state", job.seed, log).to_dict())
        if "train" in job.phases and main:
            captioner.save(model_dir)
            write_json(train_file, report)
            shutil.rmtree(job.dir / "train_state", ignore_errors=True)  # the saved model supersedes it
        out["train"] = report
    out["paradigm"] = cls.paradigm
    out["model_info"] = cls.describe(job.model)  # knobs, probes, pre-training: what reports read
    out["parameters"] = captioner.num_parameters()
    out["train_seconds"] = out["train"].get("seconds", 0.0) + out["train"].get("prepare_seconds", 0.0)

    if _now(job, "eval"):
        from bench.phases.evaluate import eval_phase

        mark_phase(job, "eval")
        out["metrics"] = eval_phase(job, task, captioner, log)
    if not main:
        return None  # the other ranks helped train and caption; rank 0 measures the rest alone
    for name in LATE_PHASES:
        if _now(job, name):
            _late_phase(name, job, task, captioner, out, log)
    return out


#: Phases after eval, in order: each reads the trained captioner (and eval's files) and writes its own
#: output; a failure of one is recorded and never discards what the phases before it produced.
LATE_PHASES = ("latency", "errprop", "diversity")


def _late_phase(name: str, job: Job, task, captioner, out: dict[str, Any], log: Callable[[str], None]) -> None:
    """Run one late phase into `out`: its headline under `name` and in `metrics`, or its error under
    `phase_errors`."""
    import importlib

    phase = getattr(importlib.import_module(f"bench.phases.{name}"), f"{name}_phase")
    mark_phase(job, name)
    try:
        headline = phase(job, task, captioner, log)
    except Exception as err:  # noqa: BLE001 - a late phase's failure must not cost the earlier results
        out.setdefault("phase_errors", {})[name] = {
            "type": type(err).__name__, "message": str(err), "traceback": traceback.format_exc()}
        log(f"{name} phase FAILED: {type(err).__name__}: {err} (earlier results kept; a rerun redoes {name})")
        return
    out[name] = headline
    # A phase's headline numbers are its metrics, unless it names them (diversity: `metrics`).
    numbers = headline.get("metrics") if isinstance(headline.get("metrics"), dict) else headline
    out.setdefault("metrics", {}).update({k: v for k, v in numbers.items() if isinstance(v, int | float)})


