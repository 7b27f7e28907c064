"""device-check's environment record and GPU sampler (bench/device_env.py), without a GPU."""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace

import pytest

from bench import device_env
from bench.device_env import GpuSampler, cpu_model, nvml_reader, open_nvml, summarise_samples


def test_sampler_is_unavailable_with_a_reason_on_a_cpu():
    sampler, nv, handle = GpuSampler.for_device("cpu")
    assert nv is None and handle is None
    sampler.start()
    sampler.sample()
    sampler.stop()
    assert sampler.window(0, 1e9) == {"available": False, "reason": "device 'cpu' is not a CUDA GPU"}
    assert device_env.gpu_processes(nv, handle, sampler.reason) == {"unavailable": "device 'cpu' is not a CUDA GPU"}


def test_missing_pynvml_is_a_reason_not_a_crash(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    nv, handle, reason = open_nvml("cuda")
    assert nv is None and handle is None and reason.startswith("pynvml is not importable")


def test_window_aggregates_min_median_max_of_the_readings_inside_it():
    readings = iter([
        {"sm_clock_mhz": 1980, "mem_clock_mhz": 2619, "power_w": 300.0, "temperature_c": 50, "throttle_reasons": []},
        {"sm_clock_mhz": 1755, "mem_clock_mhz": 2619, "power_w": 650.0, "temperature_c": 61,
         "throttle_reasons": ["sw_power_cap"]},
        {"sm_clock_mhz": 1830, "mem_clock_mhz": 2619, "power_w": None, "temperature_c": 58,
         "throttle_reasons": ["sw_power_cap", "sw_thermal_slowdown"]},
        {"sm_clock_mhz": 1410, "mem_clock_mhz": 1593, "power_w": 80.0, "temperature_c": 40, "throttle_reasons": []},
    ])
    clock = iter([1.0, 2.0, 3.0, 9.0])
    sampler = GpuSampler(lambda: next(readings), clock=lambda: next(clock))
    for _ in range(4):
        sampler.sample()
    summary = sampler.window(1.0, 3.0)  # the fourth reading (t = 9) is outside
    assert summary["available"] and summary["samples"] == 3
    assert summary["sm_clock_mhz"] == {"min": 1755, "median": 1830, "max": 1980}
    assert summary["power_w"] == {"min": 300.0, "median": 475.0, "max": 650.0}  # the missing one skipped
    assert summary["temperature_c"] == {"min": 50, "median": 58, "max": 61}
    assert summary["throttle_reasons"] == pytest.approx({"sw_power_cap": 2 / 3, "sw_thermal_slowdown": 1 / 3})
    assert summarise_samples([])["sm_clock_mhz"] is None


def test_sampler_thread_reads_until_stopped_and_counts_failures():
    calls = []

    def read():
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("NVML hiccup")
        return {"sm_clock_mhz": 1000 + len(calls)}

    sampler = GpuSampler(read, interval=0.01).start()
    deadline = time.monotonic() + 10
    while len(sampler.readings) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    sampler.stop()
    taken = len(calls)
    time.sleep(0.05)
    assert len(calls) == taken  # stopped: no more readings
    assert len(sampler.readings) >= 4 and sampler.errors == {"RuntimeError: NVML hiccup": 1}
    assert sampler.window(-1e9, 1e9)["read_errors"] == {"RuntimeError: NVML hiccup": 1}


def test_nvml_reader_converts_units_and_names_throttle_bits():
    def power(handle):
        raise RuntimeError("not supported on this GPU")

    nv = SimpleNamespace(
        NVML_CLOCK_SM=0, NVML_CLOCK_MEM=2, NVML_TEMPERATURE_GPU=0,
        nvmlDeviceGetClockInfo=lambda h, kind: {0: 1980, 2: 2619}[kind],
        nvmlDeviceGetPowerUsage=lambda h: 412_345, nvmlDeviceGetTemperature=lambda h, kind: 47,
        nvmlDeviceGetCurrentClocksThrottleReasons=lambda h: 0x4 | 0x20)
    assert nvml_reader(nv, "handle")() == {"sm_clock_mhz": 1980, "mem_clock_mhz": 2619, "power_w": 412.345,
                                           "temperature_c": 47,
                                           "throttle_reasons": ["sw_power_cap", "sw_thermal_slowdown"]}
    nv.nvmlDeviceGetPowerUsage = power
    assert nvml_reader(nv, "handle")()["power_w"] is None  # one refused query, the others still read


def test_cpu_model_is_the_model_name_not_the_architecture():
    cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9654 96-Core Processor\n"
    assert cpu_model(cpuinfo) == "AMD EPYC 9654 96-Core Processor"
    assert cpu_model("").startswith("unknown")
