import pytest
import torch

from bench.metrics.latency import batch1_latency, environment, latency_sweep, throughput
from tests.dummy import DummyCaptioner, DummyConfig


@pytest.fixture
def dummy():
    return DummyCaptioner(DummyConfig(seconds_per_eval=0.004))


def test_batch1_latency_measures_a_known_delay(dummy):
    pixels = torch.zeros(6, 3, 4, 4)
    result = batch1_latency(dummy, pixels, {"steps": 2}, warmup=1)
    expected = 0.004 * 4  # 2 steps x 2 evaluations
    assert result["images"] == 6 and result["network_evals"] == 4
    assert expected * 0.9 <= result["median_s"] <= expected * 1.5 + 0.005
    assert result["p90_s"] >= result["median_s"]


def test_sweep_scales_with_steps_and_counts_evaluations_exactly(dummy):
    pixels = torch.zeros(3, 3, 4, 4)
    rows = latency_sweep(dummy, pixels, {"steps": 1}, [{"steps": 1}, {"steps": 5}], warmup=0)
    assert [r["network_evals"] for r in rows] == [2, 10]
    assert rows[1]["median_s"] > 3 * rows[0]["median_s"]


def test_throughput_per_batch_size(dummy):
    rows = throughput(dummy, torch.zeros(2, 3, 4, 4), {"steps": 1}, [1, 4], warmup=0)
    assert [r["batch_size"] for r in rows] == [1, 4]
    # the dummy's time does not grow with the batch: 4 images take as long as 1
    assert rows[1]["images_per_s"] == pytest.approx(4 * rows[0]["images_per_s"], rel=0.5)


def test_environment_names_device_and_versions():
    env = environment("cpu")
    assert env["device_type"] == "cpu" and "CPU" in env["device"] and env["torch"] == torch.__version__
