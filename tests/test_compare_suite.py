"""bench/compare.py end to end: a tiny suite with seeds, then seeds.*, comparisons.* and determinism."""

from __future__ import annotations

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
    seeds: [0, 1]
    phases: [train, eval]
    train: {epochs: 1, batch_size: 16, lr: 1.0e-3}
    eval: {batch_size: 12}
    models:
      - constant
      - ladic-tiny
      - vit-gpt2-tiny
"""


def test_suite_writes_seed_means_and_holm_adjusted_comparisons(write_config):
    cfg = load_config(write_config(SUITE))
    messages: list[str] = []
    results = run_suite(cfg, "mini", echo=messages.append)
    assert all(r["status"] == "ok" for r in results), [r.get("error") for r in results]
    suite_dir = cfg.results_dir / "mini"
    text = "\n".join(messages)
    assert "mean ± sd over seeds" in text and "paired comparisons" in text
    assert not any(m.startswith("warning") for m in messages), text

    seeds = {r["model"]: r for r in read_json(suite_dir / "seeds.json")["models"]}
    assert set(seeds) == {"constant", "ladic-tiny", "vit-gpt2-tiny"}
    for label, row in seeds.items():
        assert row["seeds"] == [0, 1] and row["images"] == 12
        for metric in ("BLEU-4", "METEOR", "ROUGE-L", "CIDEr"):
            v = row["metrics"][metric]
            corpus = [read_json(suite_dir / r["job_id"] / "scores.json")["corpus"][metric]
                      for r in results if r["label"] == label]
            assert v["per_seed"] == pytest.approx(corpus, abs=1e-9)  # METEOR included: exact statistics
            assert v["low"] <= v["mean"] <= v["high"]
    assert seeds["constant"]["metrics"]["CIDEr"]["sd"] == 0.0  # the same captions for every seed

    tests = read_json(suite_dir / "comparisons.json")["tests"]
    pairs = {(t["kind"], t["model_a"], t["model_b"]) for t in tests}
    assert pairs == {("paradigm", "ladic-tiny", "vit-gpt2-tiny"), ("reference", "ladic-tiny", "constant"),
                     ("reference", "vit-gpt2-tiny", "constant")}
    assert len(tests) == 3 * 4  # SPICE is not measured offline
    for t in tests:
        assert t["p"] <= t["p_holm"] <= 1 and t["seeds_a"] == [0, 1]
        assert t["delta"] == pytest.approx(t["score_a"] - t["score_b"])
    for name in ("seeds.md", "seeds.csv", "comparisons.md", "comparisons.csv"):
        assert (suite_dir / name).stat().st_size > 0

    # Two runs of the same job on one machine give identical captions and scores.
    job = next(r for r in results if r["label"] == "ladic-tiny" and r["seed"] == 1)
    first = read_json(suite_dir / job["job_id"] / "scores.json")
    again = run_suite(load_config(write_config(SUITE), ["results_dir=" + str(cfg.results_dir / "again")]), "mini",
                      only=["ladic-tiny"], echo=lambda _: None)
    second = read_json(cfg.results_dir / "again" / "mini" / job["job_id"] / "scores.json")
    assert [r["status"] for r in again] == ["ok", "ok"]
    assert second["corpus"] == first["corpus"] and second["per_image"] == first["per_image"]
