"""The harness end to end with the in-process executor: results, summary, skip/resume, failures."""

import csv

import pytest

from bench.config import load_config
from bench.results import read_json
from bench.suite import run_suite

pytestmark = [pytest.mark.java, pytest.mark.slow]

SUITE = """
executor: {kind: local}
tracking: {kind: none}
suites:
  mini:
    tasks: [shapes]
    phases: [train, eval, latency, errprop]
    train: {epochs: 1, batch_size: 16, lr: 1.0e-3}
    eval: {batch_size: 8}
    latency: {images: 2, batch_sizes: [1, 2], steps: [1, 2], num_beams: [1, 2], lengths: [3, 5]}
    errprop: {images: 6, positions: 3}
    models:
      - constant
      - name: vit-gpt2-tiny
        decoding: {sweep: {num_beams: [1]}}
      - name: constant
        label: broken
        overrides: {no_such_field: 1}
"""


def test_suite_runs_records_failures_and_resumes(write_config):
    path = write_config(SUITE)
    cfg = load_config(path)
    messages = []
    results = run_suite(cfg, "mini", echo=messages.append)
    by_label = {r["label"]: r for r in results}
    assert by_label["constant"]["status"] == "ok"
    assert by_label["vit-gpt2-tiny"]["status"] == "ok"
    broken = by_label["broken"]
    assert broken["status"] == "failed" and "no_such_field" in broken["error"]
    assert "Traceback" in broken["traceback"]

    suite_dir = cfg.results_dir / "mini"
    rows = list(csv.DictReader((suite_dir / "summary.csv").open()))
    assert [r["model"] for r in rows] == ["constant", "vit-gpt2-tiny", "broken"]
    assert rows[1]["CIDEr"] != "" and rows[2]["status"] == "failed"
    job_dir = suite_dir / by_label["vit-gpt2-tiny"]["job_id"]
    captions = read_json(job_dir / "captions.json")
    assert len(captions) == 12 and {"image_id", "caption"} <= set(captions[0])
    scores = read_json(job_dir / "scores.json")
    assert set(scores["per_image"]) == {c["image_id"] for c in captions}
    assert scores["unavailable"].get("SPICE") or "SPICE" in scores["corpus"]
    for metric, value in scores["corpus"].items():
        interval = scores["intervals"][metric]
        assert interval["low"] <= value <= interval["high"] and interval["n_resamples"] == 1000
    assert [row["value"] for row in read_json(job_dir / "sweep.json")] == [1]
    assert (job_dir / "model" / "weights.pt").is_file() and not (job_dir / "train_state").exists()
    latency = read_json(job_dir / "latency.json")
    assert latency["batch1"]["images"] == 2 and latency["environment"]["device_type"] == "cpu"
    assert [r["setting"] for r in latency["sweeps"]["length"]] == [
        {"min_new_tokens": 3, "max_new_tokens": 3}, {"min_new_tokens": 5, "max_new_tokens": 5}]
    for row in latency["sweeps"]["num_beams"]:  # actual decoder passes and tokens, at most 12
        assert row["value"] == row["setting"]["num_beams"] and 1 <= row["network_evals"] <= 12
        assert row["tokens_per_caption"] == [len(c.split()) for c in row["captions"]]
    assert latency["batch1"]["repeats"] == 3 and latency["environment"]["dtype"] == "float32"
    errprop = read_json(job_dir / "errprop.json")
    assert {"quality_by_length", "free_running", "teacher_forced", "exposure_gap", "injection",
            "repetition_rate"} <= set(errprop)
    assert len(errprop["injection"]) <= 3 and not errprop["unavailable"]
    assert "injection" in read_json(suite_dir / by_label["constant"]["job_id"] / "errprop.json")["unavailable"]

    # Rerun: finished jobs are skipped and unchanged; only the failed one runs again.
    before = {p: p.stat().st_mtime_ns for p in suite_dir.rglob("*.json") if "broken" not in str(p)}
    messages.clear()
    again = run_suite(cfg, "mini", echo=messages.append)
    assert "2 already finished, 1 to run" in messages[0]
    after = {p: p.stat().st_mtime_ns for p in before}
    unchanged = {p for p in before if before[p] == after[p] and p.name != "summary.csv"}
    assert {p for p in before if p.name in ("captions.json", "scores.json", "result.json")} <= unchanged
    assert {r["label"]: r["status"] for r in again} == {"constant": "ok", "vit-gpt2-tiny": "ok",
                                                        "broken": "failed"}


def test_force_reruns_and_a_new_setting_is_a_new_job(write_config):
    path = write_config("""
        executor: {kind: local}
        tracking: {kind: none}
        suites:
          mini: {tasks: [shapes], models: [constant]}
        """)
    cfg = load_config(path)
    first = run_suite(cfg, "mini", echo=lambda _: None)[0]
    forced = run_suite(cfg, "mini", force=True, echo=lambda _: None)[0]
    assert forced["key"] == first["key"] and forced["seconds"] != first["seconds"]
    other = run_suite(load_config(path, ["suites.mini.seeds=[7]"]), "mini", echo=lambda _: None)[0]
    assert other["key"] != first["key"]
    assert other["metrics"]["CIDEr"] == pytest.approx(first["metrics"]["CIDEr"])  # seed-free model
