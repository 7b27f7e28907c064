"""The eval phase writes scores.json before the bootstrap; a broken metric or interval costs only itself."""

from __future__ import annotations

import pytest

from bench.config import load_config
from bench.results import read_json
from bench.suite import run_suite
from tests.test_quality import _fake_spice

pytestmark = pytest.mark.java

SUITE = """
tracking: {kind: none}
executor: {kind: local}
suites:
  scored:
    tasks: [shapes]
    phases: [eval]
    eval: {batch_size: 12, bootstrap: 30}
    models: [constant]
"""


@pytest.fixture(autouse=True)
def _no_meteor(monkeypatch):
    """METEOR's JVM start-up takes 15-30 s and is beside the point here (tests/test_quality.py scores it)."""
    import bench.metrics.quality as quality

    scorers = quality._scorers
    monkeypatch.setattr(quality, "_scorers", lambda metrics: scorers(tuple(m for m in metrics if m != "METEOR")))


def test_a_nan_spice_and_a_failing_bootstrap_leave_the_other_scores_and_intervals(write_config, monkeypatch):
    import bench.metrics.stats as stats

    _fake_spice(monkeypatch, lambda command, items: (0, "", [None] + [0.5] * (len(items) - 1)))
    bootstrap = stats.bootstrap_ci

    def fragile(*args, metrics, **kwargs):
        if "CIDEr" in metrics:
            raise FloatingPointError("CIDEr resample went wrong")
        return bootstrap(*args, metrics=metrics, **kwargs)

    monkeypatch.setattr(stats, "bootstrap_ci", fragile)
    cfg = load_config(write_config(SUITE))
    (result,) = run_suite(cfg, "scored", echo=lambda _: None)
    assert result["status"] == "ok", result.get("error")
    scores = read_json(cfg.results_dir / "scored" / result["job_id"] / "scores.json")
    assert "NaN for 1 of 12 image(s)" in scores["unavailable"]["SPICE"]
    assert "SPICE" not in scores["corpus"] and {"BLEU-4", "ROUGE-L", "CIDEr"} <= set(scores["corpus"])
    assert set(scores["intervals"]) == set(scores["corpus"]) - {"CIDEr"}
    assert scores["intervals_unavailable"] == {"CIDEr": "FloatingPointError: CIDEr resample went wrong"}
    low, high = scores["intervals"]["BLEU-4"]["low"], scores["intervals"]["BLEU-4"]["high"]
    assert low <= scores["corpus"]["BLEU-4"] <= high
    assert result["metrics"]["CIDEr"] == scores["corpus"]["CIDEr"] and "CIDEr_ci_low" not in result["metrics"]


def test_scores_are_on_disk_before_the_bootstrap_starts_and_a_rerun_adds_the_intervals(write_config, monkeypatch):
    import bench.metrics.stats as stats

    bootstrap = stats.bootstrap_ci

    cfg = load_config(write_config(SUITE))
    seen = {}

    def interrupted(*args, **kwargs):
        job_dir = next(p.parent for p in (cfg.results_dir / "scored").glob("*/job.json"))
        seen.update(read_json(job_dir / "scores.json"))
        raise KeyboardInterrupt  # as a Ctrl-C during a long bootstrap

    monkeypatch.setattr(stats, "bootstrap_ci", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_suite(cfg, "scored", echo=lambda _: None)
    assert seen["images_scored"] == 12 and "CIDEr" in seen["corpus"] and seen["intervals"] == {}
    assert seen["intervals_pending"] is True

    monkeypatch.setattr(stats, "bootstrap_ci", bootstrap)
    (result,) = run_suite(cfg, "scored", echo=lambda _: None)
    job_dir = cfg.results_dir / "scored" / result["job_id"]
    scores = read_json(job_dir / "scores.json")
    assert result["status"] == "ok" and "intervals_pending" not in scores
    assert set(scores["intervals"]) == set(scores["corpus"]) and scores["corpus"] == seen["corpus"]
    assert result["metrics"]["CIDEr_ci_low"] <= result["metrics"]["CIDEr"] <= result["metrics"]["CIDEr_ci_high"]
    assert "scores found without their bootstrap intervals" in (job_dir / "log.txt").read_text()
