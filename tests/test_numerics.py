"""The numerics mode (bench/numerics.py): kernel paths pinned before torch loads, refused where impossible."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench import numerics

NO_AVX2 = """processor\t: 0
model name\t: Old Cpu 9000
flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx
"""
AVX2 = NO_AVX2.replace("avx\n", "avx avx2 fma\n")


def _env(**extra: str) -> dict[str, str]:
    """This process's environment without what the mode set in it, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if k not in (*numerics.PINNED, numerics.MODE_VAR, numerics.REQUESTED_VAR)}
    return {**env, **extra}


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_unknown_mode_is_refused_naming_the_accepted_ones():
    with pytest.raises(numerics.NumericsError, match=r"'turbo'.*reproducible, fast"):
        numerics.check_mode("turbo")


def test_avx2_on_a_cpu_without_it_is_one_line_naming_the_machine():
    with pytest.raises(numerics.NumericsError) as err:
        numerics.check_machine("reproducible", cpuinfo=NO_AVX2, machine="x86_64")
    message = str(err.value)
    assert "\n" not in message and "avx2" in message.lower() and "Old Cpu 9000" in message
    numerics.check_machine("reproducible", cpuinfo=AVX2, machine="x86_64")  # accepted
    numerics.check_machine("fast", cpuinfo=NO_AVX2, machine="x86_64")  # fast pins nothing
    with pytest.raises(numerics.NumericsError, match="aarch64"):
        numerics.check_machine("reproducible", cpuinfo="", machine="aarch64")


def test_cpu_model_and_flags_from_cpuinfo():
    assert numerics.cpu_model(AVX2) == "Old Cpu 9000"
    assert {"avx2", "fma"} <= numerics.cpu_flags(AVX2)


def test_reproducible_mode_wins_over_the_environment_and_records_what_it_asked():
    code = ("from bench import numerics; numerics.apply('reproducible'); import torch, json; "
            "print(json.dumps([torch.backends.cpu.get_cpu_capability(), numerics.state()]))")
    out = _python(code, _env(ATEN_CPU_CAPABILITY="default", MKL_CBWR="COMPATIBLE"))
    assert out.returncode == 0, out.stderr
    capability, state = json.loads(out.stdout)
    assert capability == "AVX2"
    assert state["mode"] == "reproducible"
    assert state["environment_asked"] == {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}
    assert state["set"]["MKL_CBWR"] == "AVX2,STRICT" and state["set"]["ONEDNN_MAX_CPU_ISA"] == "AVX2"


def test_fast_mode_leaves_the_environment_alone():
    code = ("from bench import numerics; numerics.apply('fast'); import torch; "
            "print(torch.backends.cpu.get_cpu_capability())")
    out = _python(code, _env(ATEN_CPU_CAPABILITY="default"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "DEFAULT"


def test_torch_loaded_on_another_path_is_an_error_not_ignored():
    code = "import torch; from bench import numerics; numerics.apply('reproducible')"
    out = _python(code, _env(ATEN_CPU_CAPABILITY="default"))
    assert out.returncode != 0
    assert "NumericsError" in out.stderr and "DEFAULT" in out.stderr


def test_deterministic_algorithms_and_cublas_setting_in_reproducible_mode_only():
    """The GPU part, as far as a CPU checks it: the flags torch would use on a GPU, and the variable."""
    import torch

    try:
        numerics.configure_torch("reproducible")
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        numerics.configure_torch("fast")
        assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
    finally:
        numerics.configure_torch(numerics.current_mode())


def test_ray_workers_get_the_mode_variables(write_config):
    from bench.config import load_config
    from bench.suite import make_executor

    cfg = load_config(write_config("suites:\n  s: {tasks: [shapes], models: [constant]}\n"),
                      ["executor.kind=ray"])
    env = make_executor(cfg).env
    assert env[numerics.MODE_VAR] == "reproducible"
    for name, value in numerics.PINNED.items():
        assert env[name] == value


def test_cli_refuses_an_unknown_mode_before_any_job(write_config, tmp_path):
    path = write_config("suites:\n  s: {tasks: [shapes], models: [constant]}\n")
    out = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--suite", "s", "--config", str(path),
                          "--set", "numerics=turbo", "--executor", "local"],
                         capture_output=True, text=True, timeout=120, env=_env())
    assert out.returncode == 2
    assert "numerics" in out.stderr and "reproducible" in out.stderr and "fast" in out.stderr
    assert not (tmp_path / "results" / "s").exists()


def test_latency_records_name_the_processor_not_just_the_architecture(monkeypatch):
    from bench import cpuinfo
    from bench.metrics.latency import environment

    monkeypatch.setattr(cpuinfo, "read_cpuinfo", lambda path=cpuinfo.CPUINFO: "model name\t: Test Cpu 7\nflags\t: avx2 fma\n")
    assert environment("cpu")["device"].startswith("Test Cpu 7, ")
    assert cpuinfo.cpu_flags() == {"avx2", "fma"}
