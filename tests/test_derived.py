"""Derived files name the job set they came from; stale ones are neither kept nor used; damaged job
outputs are redone (bench/derived.py; issue 29 item 6, issue 25 item 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import derived, files
from bench.results import finished, write_json


def _job(folder: Path, name: str = "a__shapes__seed0__k") -> tuple[Path, dict]:
    job = folder / name
    write_json(job / files.CAPTIONS, [{"image_id": 1, "caption": "a red circle"}])
    write_json(job / files.SCORES, {"corpus": {"CIDEr": 0.5}})
    result = {"job_id": name, "status": "ok", "outputs": derived.output_digests(job)}
    write_json(job / files.RESULT, result)
    return job, result


def test_a_truncated_output_makes_the_job_unfinished_and_is_removed_for_the_rerun(tmp_path):
    job, result = _job(tmp_path)
    assert finished(job) is not None and derived.damaged(job, result) == []
    text = (job / files.SCORES).read_text()
    (job / files.SCORES).write_text(text[: len(text) // 2])
    assert derived.damaged(job, result) == [files.SCORES]
    assert finished(job) is None
    assert derived.repair(job) == [files.SCORES]
    assert not (job / files.SCORES).exists() and (job / files.CAPTIONS).exists()


def test_damaged_captions_take_their_scores_along_and_old_results_are_parse_checked(tmp_path):
    job, result = _job(tmp_path)
    del result["outputs"]  # a result written before digests were recorded
    write_json(job / files.RESULT, result)
    (job / files.CAPTIONS).write_text("[{")
    assert derived.damaged(job, result) == [files.CAPTIONS]
    assert sorted(derived.repair(job)) == [files.CAPTIONS, files.SCORES]


def test_derived_files_are_usable_only_while_their_inputs_are_unchanged(tmp_path):
    job, result = _job(tmp_path)
    (tmp_path / files.COMPARISONS).write_text("{}")
    assert derived.usable(tmp_path, files.COMPARISONS, [result])  # a folder from before derived.json
    made = derived.job_set(tmp_path, [result])
    derived.record(tmp_path, [files.COMPARISONS], made)
    assert derived.usable(tmp_path, files.COMPARISONS, [result])
    entry = json.loads((tmp_path / derived.MANIFEST).read_text())["files"][files.COMPARISONS]
    assert entry["jobs"] == 1 and entry["job_set"] == made["digest"] and entry["invocation"]
    write_json(job / files.SCORES, {"corpus": {"CIDEr": 0.0}})  # the inputs changed
    assert not derived.usable(tmp_path, files.COMPARISONS, [result])
    assert not derived.usable(tmp_path, files.COMPARISONS, [])  # another job set
    derived.discard(tmp_path)
    assert not (tmp_path / files.COMPARISONS).exists()
    assert files.COMPARISONS not in json.loads((tmp_path / derived.MANIFEST).read_text())["files"]


SUITE = """
executor: {kind: local}
tracking: {kind: none}
suites:
  mini:
    tasks: [shapes]
    phases: [train, eval]
    eval: {batch_size: 12, bootstrap: 0}
    models: [constant, nearest-neighbour]
"""


@pytest.mark.java
@pytest.mark.slow
def test_one_folder_one_story(write_config, monkeypatch, capsys):
    from bench.cli import main

    path = write_config(SUITE)
    assert main(["run", "--suite", "mini", "--config", str(path)]) == 0
    suite_dir = path.parent / "results" / "mini"
    assert (suite_dir / files.COMPARISONS).is_file()

    # The same folder with a changed model list: every derived file describes the new job set.
    assert main(["run", "--suite", "mini", "--config", str(path), "--set", "suites.mini.models=[constant]"]) == 0
    manifest = json.loads((suite_dir / derived.MANIFEST).read_text())
    assert {e["job_set"] for e in manifest["files"].values()} == {next(iter(manifest["job_sets"]))}
    assert {e["jobs"] for e in manifest["files"].values()} == {1}
    assert "models=[constant]" in manifest["files"][files.SUMMARY_MD]["invocation"]
    summary = (suite_dir / files.SUMMARY_CSV).read_text().splitlines()
    assert len(summary) == 2 and summary[1].startswith("constant,")
    seeds = json.loads((suite_dir / files.SEEDS).read_text())
    assert {m["model"] for m in seeds["models"]} == {"constant"}
    assert "1 job(s)" in (suite_dir / files.SUMMARY_MD).read_text()
    assert "1 job(s)" in (suite_dir / "report" / "shapes-main.md").read_text()

    # A failing comparisons step leaves no comparisons of an earlier run for the report to use.
    def broken(*args, **kwargs):
        raise RuntimeError("comparisons broke")

    monkeypatch.setattr("bench.compare.compare_suite", broken)
    capsys.readouterr()
    assert main(["report", "--suite", "mini", "--config", str(path), "--set", "suites.mini.models=[constant]"]) == 0
    assert "comparisons broke" in capsys.readouterr().err
    assert not (suite_dir / files.COMPARISONS).exists() and not (suite_dir / files.SEEDS).exists()

    # A truncated scores.json: the report refuses it; the next run redoes that job and only that one.
    monkeypatch.undo()
    (job,) = [p.parent for p in suite_dir.glob("constant__*/result.json")]
    text = (job / files.SCORES).read_text()
    (job / files.SCORES).write_text(text[:100])
    assert main(["report", "--suite", "mini", "--config", str(path), "--set", "suites.mini.models=[constant]"]) == 1
    assert "scores.json unreadable or changed" in capsys.readouterr().err
    assert main(["run", "--suite", "mini", "--config", str(path), "--set", "suites.mini.models=[constant]"]) == 0
    assert "damaged output(s) scores.json: redone" in capsys.readouterr().out
    assert json.loads((job / files.SCORES).read_text())["corpus"]["CIDEr"] >= 0
