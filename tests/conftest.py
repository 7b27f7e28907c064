"""Shared fixtures: a tiny shapes dataset, a config writer, and marker-based skips."""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import pytest

from bench import numerics

# Before anything imports torch: the tests run on the kernel paths of the suite's default mode (or the
# mode BENCH_NUMERICS names), as the driver and every worker do (bench/numerics.py).
numerics.apply(os.environ.get(numerics.MODE_VAR, numerics.DEFAULT_MODE))


def pytest_collection_modifyitems(config, items):
    import torch

    no_gpu = pytest.mark.skip(reason="needs a CUDA GPU; none here")
    no_java = pytest.mark.skip(reason="needs Java on PATH (pycocoevalcap)")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(no_gpu)
        if "java" in item.keywords and shutil.which("java") is None:
            item.add_marker(no_java)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for the module's tests (tiny models: threads cost more than they give), then
    the count it had."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_shapes_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shapes")


@pytest.fixture(scope="session")
def tiny_shapes(tiny_shapes_root):
    """A small shapes dataset shared by the session (40 train, 6 val, 12 test images)."""
    from tasks.shapes import ShapesTask

    task = ShapesTask(seed=1, train=40, val=6, test=12, root=tiny_shapes_root)
    task.ensure_files()
    return task


@pytest.fixture
def write_config(tmp_path, tiny_shapes_root):
    """Write a bench.yaml into tmp_path with results under tmp_path; returns its path."""

    def write(body: str) -> Path:
        header = textwrap.dedent(f"""\
            results_dir: {tmp_path / 'results'}
            tasks:
              shapes: {{seed: 1, train: 40, val: 6, test: 12, root: {tiny_shapes_root}}}
            """)
        path = tmp_path / "bench.yaml"
        path.write_text(header + textwrap.dedent(body))
        return path

    return write
