"""Ray executor: one Ray task per job, with the job's CPUs and GPUs as its resources.

Without an address (and no RAY_ADDRESS) a local Ray instance is started. Before anything is
scheduled, every job's request is checked against the cluster's total resources: Ray would otherwise
wait forever, silently, for a GPU that no node has. A worker that dies is retried up to
`max_retries` times (the job resumes from its last checkpoint); a job that raises is not retried: it
returns a failed result, and the other jobs go on.

A job with more than one worker (data parallel) is one Ray task that asks for nothing itself: it starts
a Ray Train run (bench/executors/ray_train.py) whose workers hold the job's CPUs and GPUs, so the
task does not sit on resources its own workers wait for. Ray Train retries those workers.

Latency is never measured beside another job's work. A job with the latency phase runs in two steps:
first every other phase (`extra["defer"] = ["latency"]`, result `partial`), then, once that step is
done, the latency phase alone in one process (the share of one of the job's workers) in a task that
asks for a whole node, every CPU and GPU it has, so Ray runs nothing else there meanwhile. Nodes take
latency steps in turn; a node holds one at a time. The second step rewrites result.json whole (its
other phases are read back from their files), and only then is the job's result handed on.

Latency steps are held by the driver until no other step is left to run, and only then handed to Ray:
a queued task that asks for a whole node keeps Ray from starting one-CPU tasks on a partly free node
(measured on a 2-core machine: one CPU idle for 2-3 minutes at a time while jobs waited), so holding
them back costs nothing and keeps every CPU busy.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from typing import Any

from bench.config import ConfigError, ExecutorConfig
from bench.executors import OnResult, execute, failed_result
from bench.plan import Job


def _touch(path: str) -> str:
    from pathlib import Path

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("probe")
    return os.uname().nodename


def _run_remote(job: Job) -> dict[str, Any]:
    return execute(job)


class RayExecutor:
    def __init__(self, config: ExecutorConfig, env: dict[str, str] | None = None):
        self.config = config
        self.env = env or {}

    def _init(self) -> dict[str, float]:
        import ray

        if not ray.is_initialized():
            address = self.config.address or os.environ.get("RAY_ADDRESS")
            ray.init(
                address=address, num_cpus=None if address else self.config.num_cpus,
                include_dashboard=False, logging_level=logging.WARNING,
                # Workers' lines go to each job's log.txt; on the console only with `bench run --verbose`.
                log_to_driver=os.environ.get("BENCH_VERBOSE") == "1",
                runtime_env={"env_vars": self.env} if self.env else None,
            )
            from bench.signals import handle_sigterm

            handle_sigterm()  # ray.init made SIGTERM a sys.exit: make it a clean stop again
        return ray.cluster_resources()

    def check_resources(self, jobs: list[Job], total: dict[str, float],
                        nodes: list[dict[str, float]] | None = None) -> None:
        """Every job's totals must fit the cluster, and each of its processes one node.

        A job's process is the job itself, or one of its data-parallel workers (cpus / workers CPUs,
        one GPU each when the job has GPUs). `nodes`: each alive node's resources (None: not checked).
        """
        problems = []
        for job in jobs:
            for name, asked in (("GPU", job.gpus), ("CPU", job.cpus)):
                if asked > total.get(name, 0):
                    problems.append(f"  {job.label} on {job.task}: asks for {asked:g} {name}(s), "
                                    f"the cluster has {total.get(name, 0):g}")
            if problems or not nodes:
                continue
            share = {"CPU": job.cpus / job.workers, "GPU": job.gpus / job.workers}
            if not any(all(node.get(k, 0) >= v for k, v in share.items()) for node in nodes):
                largest = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)))
                who = f"each of its {job.workers} workers" if job.workers > 1 else "it"
                problems.append(f"  {job.label} on {job.task}: {who} needs {share['CPU']:g} CPU(s) and "
                                f"{share['GPU']:g} GPU(s) on one node; the largest node has "
                                f"{largest.get('CPU', 0):g} CPU(s), {largest.get('GPU', 0):g} GPU(s)")
        if problems:
            raise ConfigError(
                "jobs ask for more than the Ray cluster has (Ray would wait for them forever):\n"
                + "\n".join(problems)
                + "\n  Lower resources.gpus / resources.cpus / resources.workers in bench.yaml (or --set), "
                  "or connect to a cluster that has them (--address or RAY_ADDRESS)."
            )

    def check_shared_results(self, results_dir: str, force: bool = False) -> None:
        """Every node must see the driver's results folder: workers write result files there.

        (Workers never write to MLflow, so the tracking store needs to be reachable from the driver
        only.) A task pinned to each alive node writes a probe file; the driver must find them all.
        """
        import uuid

        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        nodes = [n for n in ray.nodes() if n.get("Alive")]
        if len(nodes) < 2 and not force:
            return
        probe_dir = os.path.join(results_dir, ".node-probes", uuid.uuid4().hex)
        remote = ray.remote(_touch)
        refs = {
            remote.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
                n["NodeID"], soft=False)).remote(os.path.join(probe_dir, n["NodeID"])): n for n in nodes
        }
        hosts = dict(zip(refs, ray.get(list(refs), timeout=120), strict=True))
        unseen = [hosts[ref] for ref, node in refs.items()
                  if not os.path.isfile(os.path.join(probe_dir, node["NodeID"]))]
        import shutil

        shutil.rmtree(os.path.dirname(probe_dir), ignore_errors=True)
        if unseen:
            raise ConfigError(
                f"results_dir {results_dir} is not shared with Ray node(s) {', '.join(sorted(unseen))}: "
                "their result files would never reach this driver. Put results_dir on a filesystem "
                "every node mounts at the same path (NFS, a cluster share), e.g. --set results_dir=/shared/results."
            )

    def run(self, jobs: list[Job], on_result: OnResult) -> None:
        if not jobs:
            return
        import ray

        total = self._init()
        alive = [n for n in ray.nodes() if n.get("Alive")]
        nodes = [n.get("Resources", {}) for n in alive]
        self.check_resources(jobs, total, nodes)
        self.check_shared_results(jobs[0].results_dir)
        remote = ray.remote(_run_remote)
        pending: dict[Any, tuple[Job, str]] = {}  # ref -> (job, "main" | "latency")
        held: list[Job] = []  # jobs whose latency step waits until no main step is left
        turn = [0]  # round-robin over the nodes that can hold a latency step

        def submit(job: Job) -> None:
            if "latency" in job.phases and set(job.phases) - {"latency"}:
                job = replace(job, extra={**job.extra, "defer": ["latency"]})
            elif "latency" in job.phases:
                return held.append(job)
            if job.workers > 1:  # its Ray Train workers hold the resources and are retried by Ray Train
                job = replace(job, extra={**job.extra, "max_retries": self.config.max_retries})
                options = {"num_cpus": 0, "num_gpus": 0}
            else:
                options = {"num_cpus": job.cpus, "num_gpus": job.gpus}
            ref = remote.options(**options, max_retries=self.config.max_retries, retry_exceptions=False,
                                 name=job.job_id).remote(job)
            pending[ref] = (job, "main")

        def submit_latency(job: Job) -> None:
            step = latency_step(job)
            node = whole_node(step, alive, turn[0])
            turn[0] += 1
            ref = remote.options(**node, max_retries=self.config.max_retries, retry_exceptions=False,
                                 name=f"{job.job_id}__latency").remote(step)
            pending[ref] = (job, "latency")

        def release_latency() -> None:
            if not any(kind == "main" for _, kind in pending.values()):
                for job in held:
                    submit_latency(job)
                held.clear()

        for job in jobs:
            submit(job)
        release_latency()
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    job, step = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except Exception as err:  # noqa: BLE001 - the worker died, or Ray failed the task
                        result = failed_result(job, f"{type(err).__name__}: {err}".splitlines()[0], str(err))
                        from bench.results import RESULT, write_json

                        write_json(job.dir / RESULT, result)
                    if step == "main" and result.get("deferred"):  # not one whose phase failed
                        held.append(job)
                    else:
                        on_result(job, result)
                release_latency()
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise


def latency_step(job: Job) -> Job:
    """The job's latency step: every phase, none deferred (the others resume from their files), in one
    process with the resources of one of the job's workers (so latency means the same for any count)."""
    extra = {k: v for k, v in job.extra.items() if k not in ("defer", "max_retries")}
    extra["latency_step_of"] = {"workers": job.workers, "cpus": job.cpus, "gpus": job.gpus}
    return replace(job, workers=1, cpus=job.cpus / job.workers, gpus=job.gpus / job.workers, extra=extra)


def whole_node(step: Job, alive: list[dict[str, Any]], turn: int) -> dict[str, Any]:
    """Ray options that hold a whole node able to run `step`: all its CPUs and GPUs, pinned to it.

    Nodes are taken in turn (`turn`); one that cannot run the step (no GPU for a GPU job) is passed over.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    able = [n for n in sorted(alive, key=lambda n: n["NodeID"])
            if n["Resources"].get("CPU", 0) >= step.cpus and n["Resources"].get("GPU", 0) >= step.gpus]
    if not able:
        raise ConfigError(f"no Ray node has {step.cpus:g} CPU(s) and {step.gpus:g} GPU(s) for the latency "
                          f"of {step.label} on {step.task}")
    node = able[turn % len(able)]
    return {"num_cpus": node["Resources"].get("CPU", 0), "num_gpus": node["Resources"].get("GPU", 0),
            "scheduling_strategy": NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)}
