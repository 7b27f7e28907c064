"""`bench score` end to end: caption files become rows of a suite, joining its seeds, comparisons,
report and verdict; bad files are refused alone; MLflow mirrors each row with its file's digest."""

from __future__ import annotations

import json

import pytest

from bench.cli import main
from bench.config import load_config
from bench.results import read_json
from bench.score import ScoreRequest, run_score, scored_results

pytestmark = [pytest.mark.java, pytest.mark.slow]

SUITE = """
executor: {kind: local}
tracking: {kind: none}
suites:
  mini:
    tasks: [shapes]
    seeds: [0]
    phases: [eval]
    eval: {batch_size: 12, bootstrap: 200}
    models: [constant]
"""


def _results_file(path, samples, words: str, skip: int = 0):
    rows = [{"image_id": s.image_id, "caption": f"{s.references[0]} {words}".strip(), "id": n}
            for n, s in enumerate(samples[skip:])]
    path.write_text(json.dumps(rows))
    return path


def _lmms_file(path, samples, words: str):
    lines = [{"doc_id": n, "target": s.references[0], "filtered_resps": s.references[-1] + words, "doc_hash": "h",
              **{f"coco_{m}": {"answer": list(s.references), "pred": s.references[-1] + words, "image_id": s.image_id}
                 for m in ("Bleu_4", "CIDEr")}} for n, s in enumerate(samples)]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


def test_caption_files_join_the_suite(write_config, tiny_shapes, tmp_path, monkeypatch):
    import bench.score
    from bench.suite import run_suite

    cfg = load_config(write_config(SUITE))
    run_suite(cfg, "mini", echo=lambda _: None)
    logged = []

    class Recorder:  # stands in for the MLflow tracker: the rows reach it through the public log_job
        def start(self, *args): pass
        def log_job(self, job, result, cached=False): logged.append((job, result))
        def finish(self, status): pass

    monkeypatch.setattr("bench.tracking.make_tracker", lambda *a, **k: Recorder())
    samples = tiny_shapes.samples("test")
    good = [_results_file(tmp_path / f"diff{s}.json", samples, w, skip=s) for s, w in ((0, ""), (1, "indeed"))]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image_id": "nope_1", "caption": "x"}, {"image_id": "nope_2", "caption": "y"}]))
    messages: list[str] = []
    request = ScoreRequest("mini", "shapes", "test", "outside-diff", "diffusion", [good[0], bad, good[1]],
                           seeds=[3, 4, 5], bootstrap=200, extras={"clip": "none"})
    refresh = bench.score._refresh
    monkeypatch.setattr(bench.score, "_refresh", lambda *a: None)  # once, after the last file (time)
    written, errors = run_score(cfg, request, messages.append)
    monkeypatch.setattr(bench.score, "_refresh", refresh)
    assert len(written) == 2 and len(errors) == 1 and "nope_1 (item 0), nope_2 (item 1)" in errors[0]
    assert any("1 of 12 test image(s) have no caption" in m for m in messages)
    ar = _lmms_file(tmp_path / "ar.jsonl", samples, " on a plain background")
    run_score(cfg, ScoreRequest("mini", "shapes", "test", "outside-ar", "autoregressive", [ar], bootstrap=200,
                                extras={"clip": "none"}), messages.append)

    suite_dir = cfg.results_dir / "mini"
    rows = scored_results(suite_dir)
    assert sorted((r["label"], r["seed"]) for r in rows) == [("outside-ar", 0), ("outside-diff", 3),
                                                            ("outside-diff", 5)]
    assert not any("seed4" in p.name for p in suite_dir.iterdir())  # nothing written for the bad file
    row = next(r for r in rows if r["seed"] == 5)
    scores = read_json(suite_dir / row["job_id"] / "scores.json")
    assert scores["images_scored"] == 11 and len(scores["images_uncaptioned"]) == 1
    assert set(scores["per_image"]) == {s.image_id for s in samples[1:]}
    assert scores["intervals"]["CIDEr"]["low"] <= scores["corpus"]["CIDEr"] <= scores["intervals"]["CIDEr"]["high"]
    assert row["file"]["sha256"] in read_json(suite_dir / row["job_id"] / "job.json")["overrides"]["sha256"]

    assert sorted(job.identity()["overrides"]["sha256"] for job, _ in logged[:3]) == sorted(
        r["file"]["sha256"] for r in rows)  # each row mirrored, its file's digest in its identity (MLflow key)

    seeds = {r["model"]: r for r in read_json(suite_dir / "seeds.json")["models"]}
    assert seeds["outside-diff"]["seeds"] == [3, 5] and seeds["outside-diff"]["images"] == 11
    tests = read_json(suite_dir / "comparisons.json")["tests"]
    kinds = {(t["kind"], t["model_a"], t["model_b"]) for t in tests}
    assert ("paradigm", "outside-ar", "outside-diff") in kinds  # scored labels follow the suite's, by name
    assert ("reference", "outside-diff", "constant") in kinds
    paired = next(t for t in tests if t["kind"] == "paradigm" and t["metric"] == "CIDEr")
    assert paired["images"] == 11  # only the images every compared row captioned
    report = (suite_dir / "report" / "report.md").read_text() if (suite_dir / "report" / "report.md").is_file() \
        else "\n".join(p.read_text() for p in (suite_dir / "report").glob("*.md"))
    assert "outside-diff" in report and "outside-ar" in report

    # the same file again is found finished, not scored twice
    again, _ = run_score(cfg, ScoreRequest("mini", "shapes", "test", "outside-ar", "autoregressive", [ar],
                                           bootstrap=200, extras={"clip": "none"}), messages.append)
    assert again[0]["scored_before"] and again[0]["job_id"] == next(r for r in rows if r["label"] == "outside-ar")["job_id"]


    # a runaway caption is scored as it is, and named on the console and in scores.json
    runaway = _results_file(tmp_path / "runaway.json", samples, "")
    rows = json.loads(runaway.read_text())
    rows[0]["caption"] = " ".join(["circle"] * 150)
    runaway.write_text(json.dumps(rows))
    messages.clear()
    long, _ = run_score(cfg, ScoreRequest("mini", "shapes", "test", "outside-long", "diffusion", [runaway],
                                          bootstrap=0, extras={"clip": "none"}), messages.append)
    note = f"1 caption(s) over 100 words (longest: 150 words, image {samples[0].image_id})"
    assert any(note in m for m in messages)
    assert note in read_json(suite_dir / long[0]["job_id"] / "scores.json")["notes"][0]


def test_cli_exit_code_and_message_for_a_bad_file(write_config, tmp_path, capsys):
    config = write_config(SUITE)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"not": "a results file"}))
    code = main(["score", str(bad), "--suite", "mini", "--task", "shapes", "--label", "x", "--paradigm", "diffusion",
                 "--config", str(config), "--clip", "none"])
    out = capsys.readouterr()
    assert code == 1 and "expected a COCO results list" in out.out + out.err
    assert "0 row(s) scored; 1 file(s) rejected" in out.out
