"""A full disk fails one job with a clear message, leaves no temporary file, and costs no other job.

Real limits, no mocks: the suite runs in a child process under RLIMIT_FSIZE (what `ulimit -f` sets), so
every write past the limit fails in the kernel (EFBIG) as a full disk's would (ENOSPC).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.java]
ROOT = Path(__file__).resolve().parents[1]
LIMIT = 300_000  # bytes: every JSON file of the suite fits, a checkpoint of vit-gpt2-tiny (~0.6 MB) does not

SUITE = """
tracking: {kind: none}
executor: {kind: local}
suites:
  mini:
    tasks: [shapes]
    phases: [train, eval]
    train: {epochs: 1, batch_size: 8}
    models: [vit-gpt2-tiny, constant]
"""


def test_a_checkpoint_past_the_space_left_fails_its_job_alone_and_names_size_and_place(
        write_config, tiny_shapes):
    path = write_config(SUITE)
    code = textwrap.dedent(f"""
        import json, resource
        resource.setrlimit(resource.RLIMIT_FSIZE, ({LIMIT}, {LIMIT}))
        from bench.config import load_config
        from bench.suite import run_suite
        results = run_suite(load_config({str(path)!r}), "mini", echo=lambda _: None)
        print("RESULTS " + json.dumps({{r["label"]: [r["status"], r.get("error", "")] for r in results}}))
        """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=path.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.split("RESULTS ", 1)[1])
    assert results["constant"][0] == "ok"
    status, error = results["vit-gpt2-tiny"]
    suite_dir = path.parent / "results" / "mini"
    (job_dir,) = suite_dir.glob("vit-gpt2-tiny*")
    assert status == "failed"
    assert "no space left on device, 0." in error and f"MB needed at {job_dir / 'train_state'}" in error, error
    left = [p for p in suite_dir.rglob("*") if p.name.endswith(".tmp") or (p.name.startswith(".") and p.name != ".lock")]
    assert left == [], left
    assert "failed" in (suite_dir / "summary.csv").read_text()


def test_a_result_file_past_the_space_left_names_its_size_and_path(tmp_path):
    code = textwrap.dedent(f"""
        import resource
        from pathlib import Path
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
        from bench.results import write_json
        try:
            write_json(Path({str(tmp_path / 'scores.json')!r}), {{"x": "y" * 5_000_000}})
        except OSError as err:
            print(type(err).__name__, err)
        """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.startswith("NoSpace no space left on device, 5.0 MB needed at "), proc.stdout + proc.stderr
    assert str(tmp_path / "scores.json") in proc.stdout
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone too




def test_a_full_tmpfs_fails_the_job_that_does_not_fit_and_the_suite_goes_on(write_config, tiny_shapes, tmp_path):
    """The same on a real full filesystem (ENOSPC): a 400 kB tmpfs as results_dir, where root may mount one."""
    disk = tmp_path / "small-disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        from bench.config import load_config
        from bench.suite import run_suite

        cfg = load_config(write_config(SUITE), [f"results_dir={disk}"])
        results = {r["label"]: r for r in run_suite(cfg, "mini", echo=lambda _: None)}
        assert results["constant"]["status"] == "ok"
        failed = results["vit-gpt2-tiny"]
        assert failed["status"] == "failed" and "no space left on device, 0." in failed["error"], failed["error"]
        assert "MB needed at" in failed["error"] and "No space left on device" in failed["error"]
        left = [p for p in disk.rglob("*") if p.name.endswith(".tmp") or (p.name.startswith(".") and p.name != ".lock")]
        assert left == [], left
    finally:
        subprocess.run(["umount", str(disk)], check=True)
