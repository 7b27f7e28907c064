"""Results folders as users have them: read-only, or with characters that mean something to a URI or YAML."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest

from bench.cli import main
from bench.config import ConfigError, load_config, parse_override
from bench.suite import run_suite
from tests.fakes import use_instant_executor

SUITE = """
executor: {kind: local}
tracking: {kind: none}
suites:
  mini: {tasks: [shapes], models: [constant, nearest-neighbour]}
"""


@contextlib.contextmanager
def read_only(folder: Path):
    """Make `folder` refuse writes, for root too: a read-only bind mount (chmod binds only other users)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    bound = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if bound.returncode:
        pytest.skip(f"cannot bind-mount as root here: {bound.stderr.decode().strip()}")
    try:
        ro = subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], capture_output=True)
        if ro.returncode:
            pytest.skip(f"cannot remount read-only here: {ro.stderr.decode().strip()}")
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_run_into_a_read_only_results_folder_says_so_without_a_traceback(write_config, capsys):
    path = write_config(SUITE)
    suite_dir = load_config(path).results_dir / "mini"
    suite_dir.mkdir(parents=True)
    with read_only(suite_dir):
        assert main(["run", "--suite", "mini", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"cannot write in {suite_dir}" in err and "results_dir" in err and "Traceback" not in err


def test_the_suite_lock_on_a_read_only_folder_is_a_config_error(tmp_path):
    from bench.lock import suite_lock

    (tmp_path / "mini").mkdir()
    with read_only(tmp_path / "mini"), pytest.raises(ConfigError, match="is not writable"):
        with suite_lock(tmp_path / "mini"):
            pass


def test_report_of_a_read_only_suite_folder_writes_where_out_says(write_config, monkeypatch, capsys, tmp_path):
    executor = use_instant_executor(monkeypatch)
    path = write_config(SUITE)
    cfg = load_config(path)
    run_suite(cfg, "mini", echo=lambda _: None)
    suite_dir = cfg.results_dir / "mini"
    out = tmp_path / "elsewhere"
    with read_only(suite_dir):
        assert main(["report", "--suite", "mini", "--config", str(path)]) == 2
        assert "--out" in capsys.readouterr().err
        assert main(["report", "--suite", "mini", "--config", str(path), "--out", str(out)]) == 0
    assert (out / "summary.csv").is_file() and executor.reports[-1] == ["constant", "nearest-neighbour"]
    assert f"under {out}" in capsys.readouterr().out


def test_a_results_dir_with_uri_and_yaml_characters_keeps_every_file_inside_it(write_config, monkeypatch,
                                                                               tmp_path):
    use_instant_executor(monkeypatch)
    odd = tmp_path / "run 1?x=2 #3 %41"
    path = write_config(SUITE)
    cfg = load_config(path, [f"results_dir={odd}", "tracking.kind=mlflow",
                             "tracking.uri=sqlite:///{results_dir}/mlflow.db"])
    assert cfg.results_dir == odd
    run_suite(cfg, "mini", echo=lambda _: None)
    assert (odd / "mlflow.db").is_file() and (odd / "mini" / "summary.csv").is_file()
    # Every file lands inside results_dir. (MLflow itself also makes an empty folder named by the quoted
    # URI path: it creates the store's parent from the URI text without unquoting it.)
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and odd not in p.parents and p.name != "bench.yaml"]
    assert outside == []


def test_a_hash_after_a_space_in_a_set_value_is_part_of_the_value():
    assert parse_override("results_dir=/data/run #2") == (["results_dir"], "/data/run #2")
    assert parse_override('results_dir="/data/run #2"') == (["results_dir"], "/data/run #2")
    assert parse_override("results_dir=/data/a#b") == (["results_dir"], "/data/a#b")
    with pytest.raises(ConfigError, match="YAML comment"):
        parse_override("suites.mini.seeds=[0, 1] # two seeds")
