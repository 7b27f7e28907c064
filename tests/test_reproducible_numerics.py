"""Issue 29 item 5: the smallest learned job gives the same captions whatever kernel paths its environment
asks for, because the reproducible mode's settings win (and the result records what was asked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import numerics

SUITE = """\
tracking: {kind: none}
executor: {kind: local}
suites:
  tiny:
    tasks: [shapes]
    seeds: [0]
    phases: [train, eval]
    eval: {batch_size: 12, split: test, bootstrap: 0}
    train: {epochs: 1, batch_size: 8, lr: 1.0e-3, warmup: 0.05}
    models: [vit-gpt2-mini]
"""
OTHER_PATHS = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41"}


#: What `bench run` does for one local job, without the summary, comparisons and report after it (they
#: cost more than the job at these sizes): load the config, apply its numerics mode, plan, execute.
DRIVER = """
import sys
from bench.config import load_config
from bench.numerics import apply
cfg = load_config(sys.argv[1], ["results_dir=" + sys.argv[2]])
apply(cfg.numerics)
from bench.executors import execute
from bench.plan import plan_suite
(job,) = plan_suite(cfg, "tiny")
assert execute(job)["status"] == "ok"
"""


def _start(config: Path, results: Path, extra_env: dict[str, str]) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items()
           if k not in (*numerics.PINNED, numerics.MODE_VAR, numerics.REQUESTED_VAR)}
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(config), str(results)], env={**env, **extra_env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process: subprocess.Popen, results: Path) -> tuple[list, dict]:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]
    (job,) = [p.parent for p in (results / "tiny").glob("*/result.json")]
    captions = json.loads((job / "captions.json").read_text())
    return captions, json.loads((job / "result.json").read_text())


@pytest.mark.slow
@pytest.mark.java
def test_captions_identical_when_the_environment_asks_for_other_kernel_paths(write_config, tiny_shapes, tmp_path):
    config = write_config(SUITE)
    # Both at once (one thread each; the data exists already: tiny_shapes), so this takes one job's time.
    plain_run = _start(config, tmp_path / "plain", {})
    other_run = _start(config, tmp_path / "other", OTHER_PATHS)
    plain_captions, plain = _finish(plain_run, tmp_path / "plain")
    other_captions, other = _finish(other_run, tmp_path / "other")
    assert other_captions == plain_captions
    assert other["metrics"]["CIDEr"] == plain["metrics"]["CIDEr"]
    for result in (plain, other):
        env = result["environment"]
        assert env["numerics"]["mode"] == "reproducible"
        assert env["kernels"]["torch_cpu_capability"] == "AVX2"  # DEFAULT had the environment won
        assert env["kernels"]["MKL_CBWR"] == "AVX2,STRICT" and env["kernels"]["deterministic_algorithms"]
    assert other["environment"]["numerics"]["environment_asked"] == OTHER_PATHS
    assert plain["environment"]["numerics"]["environment_asked"] == {}
