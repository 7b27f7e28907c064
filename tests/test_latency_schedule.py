"""Latency is measured apart: a deferred latency step completes a job's result, and under Ray no
latency step overlaps another job's work (timestamps written by a stand-in for the job runner)."""

import json
import time
from dataclasses import replace

import pytest

from bench.config import load_config
from bench.plan import plan_suite
from bench.results import finished, read_json

SUITE = """
executor: {kind: ray}
tracking: {kind: none}
suites:
  mini:
    tasks: [shapes]
    phases: [train, eval, latency]
    resources: {cpus: 1}
    eval: {bootstrap: 0}
    latency: {images: 2, batch_sizes: [1], repeats: 2}
    models: [constant, {name: constant, label: b}, {name: constant, label: c}, {name: constant, label: d}]
"""


@pytest.mark.java
def test_a_deferred_latency_step_completes_the_result(write_config):
    from bench.runner import run_job

    job = plan_suite(load_config(write_config(SUITE)), "mini", only=["constant"])[0]
    first = run_job(replace(job, extra={"defer": ["latency"]}))
    assert first["status"] == "partial" and first["deferred"] == ["latency"]
    assert "CIDEr" in first["metrics"] and not (job.dir / "latency.json").exists()
    assert finished(job.dir) is None  # not done: a rerun completes it
    scores = (job.dir / "scores.json").stat().st_mtime_ns
    done = run_job(job)
    assert done["status"] == "ok" and "deferred" not in done
    assert (job.dir / "scores.json").stat().st_mtime_ns == scores  # eval read back, not redone
    assert done["metrics"]["CIDEr"] == first["metrics"]["CIDEr"] and "latency_median_s" in done["metrics"]
    assert done["seconds"] >= first["seconds"] and done["model_info"]["paradigm"] == "reference"
    assert read_json(job.dir / "result.json") == json.loads(json.dumps(done, default=str))
    assert read_json(job.dir / "latency.json")["batch1"]["repeats"] == 2


# b's main step outlasts the others: a's and c's latency steps are due while b and d still run.
MAIN_SECONDS = {"constant": 0.3, "b": 3.0, "c": 0.3, "d": 0.3}


def _stand_in(job):
    """Records when each step of a job ran; a main step takes longer than the machine has cores."""
    step = "main" if job.extra.get("defer") else "latency"
    started = time.time()
    time.sleep(MAIN_SECONDS.get(job.label, 0.6) if step == "main" else 0.3)
    job.dir.mkdir(parents=True, exist_ok=True)
    (job.dir / f"{step}.span").write_text(json.dumps([started, time.time(), job.workers, job.cpus]))
    if step == "main":  # as bench.runner reports a step that deferred latency
        return {"key": job.key, "label": job.label, "status": "partial", "deferred": ["latency"]}
    return {"key": job.key, "label": job.label, "status": "ok"}


@pytest.mark.slow
def test_ray_latency_steps_never_overlap_another_jobs_work(write_config, monkeypatch):
    import ray

    from bench.executors import ray as ray_executor

    jobs = plan_suite(load_config(write_config(SUITE)), "mini")
    monkeypatch.setattr(ray_executor, "_run_remote", _stand_in)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        handed = []
        ray_executor.RayExecutor(load_config(write_config(SUITE)).executor).run(
            jobs, lambda job, result: handed.append(result["status"]))
    finally:
        ray.shutdown()
    assert handed == ["ok"] * 4  # each job is handed on once, after its latency step
    spans = {(job.label, step): json.loads((job.dir / f"{step}.span").read_text())
             for job in jobs for step in ("main", "latency")}
    mains = [s for (_, step), s in spans.items() if step == "main"]
    assert any(a[0] < b[1] and b[0] < a[1] for a in mains for b in mains if a is not b)  # mains share the box
    # Latency steps wait in the driver until every main step is done: a whole-node request queued in
    # Ray would keep one-CPU main steps from starting on a half-free node (a CPU left idle).
    last_main = max(end for _, end, _, _ in mains)
    assert all(s[0] >= last_main for (_, step), s in spans.items() if step == "latency")
    assert spans[("d", "main")][1] < spans[("b", "main")][1]  # d ran beside b, not after it
    for (label, step), (start, end, workers, _) in spans.items():
        if step != "latency":
            continue
        assert workers == 1
        for (other, _), (o_start, o_end, _, _) in spans.items():
            if other != label:
                assert end <= o_start or o_end <= start, f"{label}'s latency overlaps {other}'s work"
