"""The Ray executor on a local instance: one task per job, and a clear failure for impossible GPUs."""

import pytest

from bench.config import ConfigError, load_config
from bench.suite import run_suite

pytestmark = [pytest.mark.java, pytest.mark.slow]


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_runs_jobs_in_parallel_workers(write_config, ray_local):
    path = write_config("""
        executor: {kind: ray}
        tracking: {kind: none}
        suites:
          mini:
            tasks: [shapes]
            resources: {cpus: 1}
            models: [constant, nearest-neighbour, {name: constant, label: broken, overrides: {no_such: 1}}]
        """)
    results = run_suite(load_config(path), "mini", echo=lambda _: None)
    assert [r["status"] for r in results] == ["ok", "ok", "failed"]  # a raising job is a row, not a crash
    assert "no_such" in results[2]["error"] and "Traceback" in results[2]["traceback"]
    results = results[:2]
    import os

    assert all(r["host"] == os.uname().nodename for r in results)
    assert all((load_config(path).results_dir / "mini" / r["job_id"] / "scores.json").is_file() for r in results)


def test_a_gpu_the_cluster_lacks_fails_at_once(write_config, ray_local):
    path = write_config("""
        executor: {kind: ray}
        tracking: {kind: none}
        suites:
          mini:
            tasks: [shapes]
            models: [constant, {name: nearest-neighbour, resources: {cpus: 1, gpus: 1}}]
        """)
    with pytest.raises(ConfigError, match="nearest-neighbour on shapes: asks for 1 GPU"):
        run_suite(load_config(path), "mini", echo=lambda _: None)


def test_results_folder_probe_passes_on_a_shared_folder(tmp_path, ray_local):
    from bench.config import ExecutorConfig
    from bench.executors.ray import RayExecutor

    RayExecutor(ExecutorConfig()).check_shared_results(str(tmp_path), force=True)
    assert not (tmp_path / ".node-probes").exists()  # probes cleaned up
