"""bench/compare.py without Java: which pairs a suite compares, and Holm over the suite's tests."""

from __future__ import annotations

import pytest

from bench.compare import Model, Run, comparison_rows, pairs
from tests.test_stats import caption_set, rouge_per_image


def model(label: str, paradigm: str, trainable: bool, order: int, cider: float = 0.0) -> Model:
    m = Model("shapes", label, paradigm, trainable, order)
    m.runs = [Run(f"{label}-0", 0, {}, {}, {"CIDEr": cider}, None)]
    return m


def test_pairs_follow_the_declared_paradigms_and_the_best_reference():
    models = [model("const", "reference", False, 0, 0.1), model("nn", "reference", False, 1, 0.4),
              model("diff", "diffusion", True, 2), model("ar1", "autoregressive", True, 3),
              model("ar2", "autoregressive", True, 4), model("masked", "masked-diffusion", True, 5)]
    got = [(kind, a.label, b.label) for kind, a, b in pairs(models)]
    assert got == [("paradigm", "diff", "ar1"), ("paradigm", "diff", "ar2"), ("paradigm", "diff", "masked"),
                   ("paradigm", "ar1", "masked"), ("paradigm", "ar2", "masked"),
                   ("reference", "diff", "nn"), ("reference", "ar1", "nn"), ("reference", "ar2", "nn"),
                   ("reference", "masked", "nn")]
    # One paradigm and no reference: nothing to compare.
    assert pairs([model("ar1", "autoregressive", True, 0), model("ar2", "autoregressive", True, 1)]) == []


def test_comparisons_are_holm_adjusted_over_the_suite():
    gts, runs = caption_set(150, (0.1, 0.12, 0.5, 0.52, 0.9), seed=3)
    metrics = ("BLEU-4", "ROUGE-L", "CIDEr")

    def with_seeds(label, paradigm, trainable, order, seeds):
        m = Model("shapes", label, paradigm, trainable, order, gts=gts)
        for n, res in enumerate(seeds):
            per = rouge_per_image(gts, res)
            m.runs.append(Run(f"{label}-{n}", n, res, per, {k: 0.5 for k in metrics}, None))
        return m

    models = [with_seeds("ref", "reference", False, 0, [runs[4]]),
              with_seeds("good", "diffusion", True, 1, runs[0:2]),
              with_seeds("bad", "autoregressive", True, 2, runs[2:4])]
    rows = comparison_rows(models, None, n_resamples=300)
    assert [(r["model_a"], r["model_b"]) for r in rows[::3]] == [("good", "bad"), ("good", "ref"), ("bad", "ref")]
    assert [r["metric"] for r in rows[:3]] == list(metrics)
    # Two families, each Holm-adjusted on its own: the cross-paradigm quality tests, then the rest.
    assert [r["family"] for r in rows] == ["primary"] * 3 + ["secondary"] * 6
    for family in ("primary", "secondary"):
        mine = [r for r in rows if r["family"] == family]
        k = len(mine)
        for r in mine:
            assert r["p"] <= r["p_holm"] <= min(1.0, k * r["p"]) + 1e-12
            assert r["delta"] > 0 and r["significant"], r  # each A is clearly better than its B
            assert r["low"] > 0 and r["low_holm"] > 0 and r["seeds_a"] == [0, 1]
        smallest = min(mine, key=lambda r: r["p"])
        assert smallest["p_holm"] == pytest.approx(k * smallest["p"])


class Recorder:
    def __init__(self):
        self.paths = []

    def log_artifact(self, path):
        self.paths.append(path.name)


@pytest.mark.parametrize("fails", [False, True])
def test_the_suite_logs_the_comparisons_and_survives_their_failure(tmp_path, monkeypatch, fails):
    import bench.compare
    import bench.report
    from bench import suite

    def compare_suite(suite_dir, results, echo=print, **_):
        if fails:
            raise RuntimeError("no java")
        return [suite_dir / "comparisons.json", suite_dir / "seeds.md"]

    monkeypatch.setattr(bench.compare, "compare_suite", compare_suite)
    monkeypatch.setattr(bench.report, "build_report", lambda suite_dir, results, **_: [suite_dir / "report.md"])
    tracker, messages = Recorder(), []
    result = {"label": "constant", "task": "shapes", "seed": 0, "status": "ok", "metrics": {"CIDEr": 0.5}}
    suite._summarise(tmp_path, [result], tracker, 0.0, messages.append)
    expected = ["summary.md", "summary.csv", "report.md"]
    assert tracker.paths == (expected if fails else [*expected[:2], "comparisons.json", "seeds.md", "report.md"])
    assert any("paired comparisons not written: RuntimeError: no java" in m for m in messages) == fails
    assert (tmp_path / "summary.csv").is_file()


def test_enough_resamples_that_holm_can_still_find_a_difference():
    from bench.compare import ALPHA, resamples_for

    def model(label, paradigm, trainable, order):
        corpus = {m: 0.5 for m in ("BLEU-4", "METEOR", "ROUGE-L", "CIDEr")}
        return Model("shapes", label, paradigm, trainable, order, runs=[Run(f"{label}-0", 0, {}, {}, corpus, None)])

    few = [model("a", "diffusion", True, 0), model("b", "autoregressive", True, 1)]
    assert resamples_for(few, 1000) == 1000  # 4 tests: 1000 resamples already resolve p = alpha / 16
    many = few + [model(f"m{i}", kind, True, 2 + i) for i, kind in
                  enumerate(["diffusion", "autoregressive"] * 4)] + [model("nn", "reference", False, 20)]
    tests = 4 * len(pairs(many))  # 25 cross-paradigm pairs + 10 against the reference, 4 metrics each
    assert tests == 140
    b = resamples_for(many, 1000)
    assert b % 1000 == 0 and b == 12000  # 4 x 140 / 0.05 - 1 = 11199, rounded up to a thousand
    # the p floor is at most alpha / (4 x tests): Holm's first step on it leaves room to spare
    assert 1 / (b + 1) <= ALPHA / (4 * tests)


@pytest.mark.parametrize("fails", [False, True])
def test_the_suite_hands_existing_comparisons_to_the_step_that_may_reuse_them(tmp_path, monkeypatch, fails):
    """compare_suite keeps seeds.json / comparisons.json whose input digest matches (a rerun reuses them),
    so the suite must not delete them first; only a failing step removes them (none of another job set
    survives)."""
    import bench.compare
    import bench.report
    from bench import files, suite

    for name in (files.SEEDS, files.COMPARISONS):
        (tmp_path / name).write_text("{}")
    seen = []

    def compare_suite(suite_dir, results, echo=print, **_):
        seen.append(sorted(p.name for p in suite_dir.glob("*.json")))
        if fails:
            raise RuntimeError("no java")
        return [suite_dir / files.COMPARISONS]

    monkeypatch.setattr(bench.compare, "compare_suite", compare_suite)
    monkeypatch.setattr(bench.report, "build_report", lambda suite_dir, results, **_: [])
    result = {"label": "constant", "task": "shapes", "seed": 0, "status": "ok", "metrics": {"CIDEr": 0.5}}
    suite._summarise(tmp_path, [result], Recorder(), 0.0, lambda m: None)
    assert {files.SEEDS, files.COMPARISONS} <= set(seen[0])  # there when the step ran
    assert (tmp_path / files.COMPARISONS).exists() != fails  # and removed only by a failure
