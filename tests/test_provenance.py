"""Provenance (issue 29 items 3 and 7): the recorded environment, the footer, one stated scale."""

from __future__ import annotations

import pytest

from bench.environment import capture, differences, kernel_path
from bench.report.data import Entry, Run
from bench.report.footer import footer_text, provenance
from bench.results import with_scaled


def _env(mode: str, capability: str) -> dict:
    return {"cpu_model": "AMD EPYC", "numerics": {"mode": mode}, "python": "3.11.7", "commit": "a" * 40,
            "dirty": True, "packages": {"lock": "0123456789abcdef", "differs": {"rich": "14.0 (lock 13.9)"}},
            "kernels": {"torch_cpu_capability": capability, "MKL_CBWR": "AVX2,STRICT", "ONEDNN_MAX_CPU_ISA": "AVX2",
                        "deterministic_algorithms": True, "threads": 1, "interop_threads": 1}}


def _entry(label: str, env: dict) -> Entry:
    return Entry(label=label, model=label, task="shapes", paradigm="autoregressive", parameters=1, order=0,
                 runs=[Run(result={"seed": 0, "environment": env})])


def test_capture_records_what_explains_a_difference():
    env = capture()
    assert env["cpu_model"] and env["python"] and len(env["commit"]) == 40 and isinstance(env["dirty"], bool)
    assert env["kernels"]["torch_cpu_capability"] == "AVX2"  # the tests run in the reproducible mode
    assert env["numerics"]["mode"] == "reproducible"
    assert len(env["packages"]["lock"]) == 16
    assert env["gpu"] is None  # no CUDA device here


def test_differences_name_the_fields():
    a, b = _env("reproducible", "AVX2"), _env("fast", "AVX512")
    assert differences(a, b) == {"numerics.mode": ("reproducible", "fast"),
                                 "kernels.torch_cpu_capability": ("AVX2", "AVX512")}
    assert kernel_path(b) == "fast/AVX512" and kernel_path(None) == "unrecorded"


def test_footer_states_the_environment_and_flags_rows_from_different_kernel_paths():
    same = provenance([_entry("a", _env("reproducible", "AVX2")), _entry("b", _env("reproducible", "AVX2"))],
                      commit="abc", made_from="2 job(s), set x, made by `bench run --suite shapes`")
    text = footer_text(same)
    assert "numerics reproducible/AVX2 (MKL_CBWR AVX2,STRICT" in text and "cpu AMD EPYC" in text
    assert "lock 0123456789abcdef + 1 differing: rich 14.0 (lock 13.9)" in text
    assert "code aaaaaaaaaaaa dirty" in text and "python 3.11.7" in text
    assert "results 2 job(s), set x, made by `bench run --suite shapes`" in text
    assert "MIXED" not in text
    mixed = footer_text(provenance([_entry("a", _env("reproducible", "AVX2")), _entry("b", _env("fast", "AVX512"))],
                                   commit="abc"))
    assert "kernel paths MIXED, paired rows not like for like: fast/AVX512: b; reproducible/AVX2: a" in mixed


def test_quality_metrics_also_at_the_tables_scale_and_nothing_else():
    assert with_scaled("CIDEr", 1.991) == [("CIDEr", 1.991), ("CIDEr_x100", pytest.approx(199.1))]
    assert with_scaled("BLEU-4_ci_low", 0.25) == [("BLEU-4_ci_low", 0.25), ("BLEU-4_ci_low_x100", 25.0)]
    assert with_scaled("latency_median_s", 0.5) == [("latency_median_s", 0.5)]


def test_mlflow_metrics_carry_both_scales():
    from bench.tracking import MlflowTracker

    metrics = {m.key: m.value for m in MlflowTracker._result_metrics({"metrics": {"CIDEr": 1.991, "images_scored": 3}})}
    assert metrics["CIDEr"] == 1.991 and metrics["CIDEr_x100"] == pytest.approx(199.1) and "images_scored_x100" not in metrics
