"""Damaged result files: a job whose result.json cannot be read is named, redone, and costs no other job."""

from __future__ import annotations

from bench.cli import main
from bench.config import load_config
from bench.results import read_json
from bench.suite import run_suite
from tests.fakes import use_instant_executor

SUITE = """
executor: {kind: local}
tracking: {kind: none}
suites:
  mini: {tasks: [shapes], models: [constant, nearest-neighbour, vit-gpt2-tiny]}
"""


def _damage(cfg, *labels: str) -> dict[str, str]:
    """Cut the result.json of each label's job in half; returns label -> its path."""
    damaged = {}
    for path in (cfg.results_dir / "mini").glob("*/result.json"):
        label = read_json(path)["label"]
        if label in labels:
            path.write_text(path.read_text()[:40])
            damaged[label] = str(path)
    assert sorted(damaged) == sorted(labels)
    return damaged


def test_unreadable_result_files_are_named_and_redone_and_the_other_jobs_go_on(write_config, monkeypatch):
    executor = use_instant_executor(monkeypatch)
    cfg = load_config(write_config(SUITE))
    run_suite(cfg, "mini", echo=lambda _: None)
    damaged = _damage(cfg, "constant", "nearest-neighbour")

    messages: list[str] = []
    results = run_suite(cfg, "mini", echo=messages.append)
    assert sorted(executor.ran[3:]) == ["constant", "nearest-neighbour"]
    for path in damaged.values():
        assert any(path in m and "damaged" in m for m in messages), messages
    assert [r["status"] for r in results] == ["ok"] * 3
    assert (cfg.results_dir / "mini" / "summary.md").read_text().count("| ok") == 3


def test_report_with_an_unreadable_result_file_names_it_and_reports_the_rest(write_config, monkeypatch, capsys):
    executor = use_instant_executor(monkeypatch)
    path = write_config(SUITE)
    cfg = load_config(path)
    run_suite(cfg, "mini", echo=lambda _: None)
    damaged = _damage(cfg, "constant")
    capsys.readouterr()

    assert main(["report", "--suite", "mini", "--config", str(path)]) == 0
    err = capsys.readouterr().err
    assert damaged["constant"] in err and "Traceback" not in err
    assert executor.reports[-1] == ["nearest-neighbour", "vit-gpt2-tiny"]
