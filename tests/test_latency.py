import statistics

import pytest
import torch

from bench.api import PROBE_FORCED_LENGTH, Knob
from bench.metrics.latency import (
    batch1_latency,
    environment,
    latency_sweep,
    observed_dtypes,
    spread,
    throughput,
)
from bench.phases.latency import LENGTH, headline, sweep_settings
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


def test_batch1_latency_records_repeats_and_their_spread(dummy):
    result = batch1_latency(dummy, torch.zeros(3, 3, 4, 4), {"steps": 1}, warmup=0, repeats=4)
    assert result["repeats"] == 4 and len(result["repeat_medians_s"]) == 4
    assert result["median_s"] == statistics.median(result["repeat_medians_s"])
    assert result["iqr_s"] >= 0 and result["std_s"] >= 0 and result["captions"] == ["a dummy caption"] * 3


def test_spread_of_known_values():
    assert spread([1.0, 2.0, 3.0, 4.0, 5.0]) == {"median": 3.0, "iqr": 2.0, "std": pytest.approx(1.5811, 1e-4)}
    assert spread([2.0]) == {"median": 2.0, "iqr": 0.0, "std": 0.0}


def test_sweep_scales_with_steps_and_counts_evaluations_exactly(dummy):
    pixels = torch.zeros(3, 3, 4, 4)
    rows = latency_sweep(dummy, pixels, {"steps": 1}, [{"steps": 1}, {"steps": 5}], warmup=0, values=[1, 5])
    assert [r["network_evals"] for r in rows] == [2, 10] and [r["value"] for r in rows] == [1, 5]
    assert rows[1]["median_s"] > 3 * rows[0]["median_s"]


def test_throughput_per_batch_size(dummy):
    rows = throughput(dummy, torch.zeros(2, 3, 4, 4), {"steps": 1}, [1, 4], warmup=0)
    assert [r["batch_size"] for r in rows] == [1, 4]
    # the dummy's time does not grow with the batch: 4 images take as long as 1
    assert rows[1]["images_per_s"] == pytest.approx(4 * rows[0]["images_per_s"], rel=0.5)


def test_environment_names_device_and_versions():
    env = environment("cpu")
    from bench.cpuinfo import cpu_model

    assert env["device_type"] == "cpu" and env["device"].startswith(cpu_model()) and env["torch"] == torch.__version__
    assert env["device"].endswith(f"{torch.get_num_threads()} thread(s)")


class _Linear(DummyCaptioner):
    trainable = True

    def __init__(self, config, dtype=torch.float32):
        super().__init__(config)
        self.layer = torch.nn.Linear(4, 4).to(dtype)

    @property
    def module(self):
        return self.layer

    def caption(self, pixel_values, steps: int = 5):
        self.layer(torch.zeros(1, 4, dtype=self.layer.weight.dtype))
        return ["x"] * len(pixel_values)


def test_observed_dtypes_are_what_the_layers_compute_in():
    plain = _Linear(DummyConfig(0.0))
    seen = observed_dtypes(plain, lambda: plain.caption(torch.zeros(1)))
    assert seen == {"parameter_dtypes": ["float32"], "compute_dtypes": ["float32"], "autocast": None}
    half = _Linear(DummyConfig(0.0), torch.bfloat16)
    assert observed_dtypes(half, lambda: half.caption(torch.zeros(1)))["compute_dtypes"] == ["bfloat16"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        seen = observed_dtypes(plain, lambda: plain.caption(torch.zeros(1)))
    assert seen["parameter_dtypes"] == ["float32"] and seen["compute_dtypes"] == ["bfloat16"]
    assert seen["autocast"] == "bfloat16"
    assert environment("cpu", seen)["dtype"] == "bfloat16"
    references = DummyCaptioner(DummyConfig(0.0))  # no network: nothing to observe
    assert observed_dtypes(references, lambda: None)["compute_dtypes"] == []


class _Declared(DummyCaptioner):
    knobs = (Knob("steps", int, 5, sweep=(1, 5), cost=True), Knob("temperature", float, 1.0, sweep=(0.5, 1.0)),
             Knob("width", int, 2, sweep=(2, 4), cost=True))
    probes = frozenset({PROBE_FORCED_LENGTH})

    def forced_length_decoding(self, tokens):
        return {"exact": tokens}


def test_sweeps_come_from_the_captioners_declarations():
    captioner = _Declared(DummyConfig(0.0))
    sweeps = sweep_settings(captioner, {"sweep": {"steps": [2, 3], "num_beams": [1]}, "lengths": [4, 6]})
    # cost knobs only (not temperature); the suite's values where given, else the knob's own sweep;
    # a suite value for a knob this captioner lacks is not for it
    assert sweeps == {"steps": ([2, 3], [{"steps": 2}, {"steps": 3}]), "width": ([2, 4], [{"width": 2}, {"width": 4}]),
                      LENGTH: ([4, 6], [{"exact": 4}, {"exact": 6}])}
    assert LENGTH not in sweep_settings(DummyCaptioner(DummyConfig(0.0)), {"lengths": [4]})  # no probe, no sweep
    with pytest.raises(ValueError, match=r"latency\.sweep\.steps"):
        sweep_settings(captioner, {"sweep": {"steps": ["many"]}})


def test_headline_carries_spread_tokens_and_dtype():
    report = {"batch1": {"median_s": 0.01, "p90_s": 0.02, "iqr_s": 0.001, "std_s": 0.002, "network_evals": 7.0,
                         "tokens": 6.0},
              "throughput": [{"batch_size": 1, "images_per_s": 50.0}], "environment": {"device": "cpu", "dtype": "float32"}}
    out = headline(report)
    assert out["latency_iqr_s"] == 0.001 and out["tokens_per_caption"] == 6.0 and out["dtype"] == "float32"
