"""Metric directions declared once (bench/metrics/catalog.py) and read by comparisons, tables, verdict."""

from __future__ import annotations

import json

import pytest

from bench.metrics.catalog import CATALOG, EXTRA_METRICS, higher_is_better


def test_every_metric_the_harness_reports_declares_a_direction():
    from bench.metrics.quality import METRICS
    from bench.report.diversity import MORE_DIVERSE_HIGHER

    assert set(METRICS) | set(EXTRA_METRICS) <= set(CATALOG)
    assert set(MORE_DIVERSE_HIGHER) <= set(CATALOG)
    assert higher_is_better("CIDEr") and higher_is_better("CLIPScore") and higher_is_better("CHAIR-recall")
    assert not higher_is_better("CHAIR-i") and not higher_is_better("CHAIR-s")
    assert not higher_is_better("diversity mbleu4") and higher_is_better("diversity self_cider")
    with pytest.raises(KeyError, match="declares no direction.*catalog.py"):
        higher_is_better("CIDEr-Z")


def test_a_lower_better_metric_flips_the_verdict():
    from bench.compare import verdict_text
    from bench.report.verdict import quality_rows

    row = {"task": "coco", "kind": "paradigm", "metric": "CHAIR-i", "model_a": "diff", "paradigm_a": "diffusion",
           "model_b": "ar", "paradigm_b": "autoregressive", "score_a": 0.10, "score_b": 0.20, "delta": -0.10,
           "low": -0.15, "high": -0.05, "p": 0.001, "p_holm": 0.002, "significant": True,
           "higher_is_better": higher_is_better("CHAIR-i")}
    assert verdict_text(row) == "diff better"  # fewer hallucinations
    (verdict,) = quality_rows([row], {"diffusion": [], "autoregressive": []}, "coco")
    assert verdict.verdict == "diffusion ahead (diff beats every autoregressive model)"


def _job(suite_dir, label: str, corpus: dict, uncaptioned: int = 0):
    folder = suite_dir / f"{label}__coco__seed0__x"
    folder.mkdir(parents=True)
    result = {"job_id": folder.name, "label": label, "model": "caption-file", "task": "coco", "seed": 0,
              "paradigm": "diffusion", "status": "ok", "metrics": corpus}
    intervals = {m: {"low": v - 0.01, "high": v + 0.01} for m, v in corpus.items()}
    (folder / "result.json").write_text(json.dumps(result))
    (folder / "scores.json").write_text(json.dumps({"corpus": corpus, "intervals": intervals, "images_scored": 10,
                                                    "images_uncaptioned": [str(i) for i in range(uncaptioned)]}))
    return result


def test_report_table_of_other_metrics_bolds_by_direction_and_notes_uncaptioned(tmp_path):
    from bench.report.data import load_entries
    from bench.report.extra import extra_markdown, uncaptioned_note

    results = [_job(tmp_path, "a", {"CIDEr": 0.5, "CLIPScore": 0.70, "CHAIR-i": 0.30}, uncaptioned=2),
               _job(tmp_path, "b", {"CIDEr": 0.6, "CLIPScore": 0.75, "CHAIR-i": 0.10})]
    entries, _ = load_entries(tmp_path, results)
    table = extra_markdown(entries)
    assert "CLIPScore (higher is better)" in table and "CHAIR-i (lower is better)" in table
    lines = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| a") or
             line.startswith("| b")}
    assert "**75.0" in lines["b"] and "**10.0" in lines["b"] and "**" not in lines["a"]
    note = uncaptioned_note(entries)
    assert "a (caption files without 2 image(s); 10 scored)" in note and "b (" not in note
