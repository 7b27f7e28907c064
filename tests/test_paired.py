"""The suite statistics' definitions (bench/paired.py, bench/metrics/resampling.py) on hand-made examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.metrics import resampling
from bench.paired import ALPHA, Model, Run, adjusted_interval, finish_family, format_p, p_value
from tests.test_stats import caption_set, rouge_per_image


def test_p_at_the_floor_is_printed_as_a_bound():
    assert format_p(1 / 6001, 1 / 6001) == "<= 0.00017"
    assert format_p(0.2, 1 / 6001) == "0.2"
    assert format_p(0.0004) == "4.0e-04"


def test_adjusted_interval_inverts_the_test():
    # |d* - d| sorted: 9 8 ... 1 0 (B = 10 resamples); d = 5.5
    spread = np.arange(9, -1, -1, dtype=float)
    # level 0.5: K = floor(0.5 * 11) - 1 = 4, h = spread[4] = 5 < 5.5: excludes 0
    assert adjusted_interval(5.5, spread, 0.5) == (0.5, 10.5)
    # level 0.3: K = 2, h = 7 >= 5.5: contains 0; p = (1 + #{>= 5.5}) / 11 = 5 / 11 > 0.3 agrees
    assert adjusted_interval(5.5, spread, 0.3) == (-1.5, 12.5)
    assert adjusted_interval(5.5, spread, 0.05) == (-math.inf, math.inf)  # below the floor: no bound


def test_holm_intervals_agree_with_the_decision():
    rng = np.random.default_rng(0)
    rows = []
    for shift in (0.0, 0.05, 0.1, 0.2, 0.3, 0.5):
        deltas = rng.normal(shift, 0.1, 2000)
        d = float(deltas.mean())
        rows.append({"delta": d, "p": p_value(deltas, d), "_spread": np.sort(np.abs(deltas - d))[::-1]})
    finish_family(rows, "primary")
    assert {r["significant"] for r in rows} == {True, False}
    for r in rows:
        excludes = r["low_holm"] is not None and not (r["low_holm"] <= 0 <= r["high_holm"])
        assert excludes == r["significant"] == (r["p_holm"] <= ALPHA)


def test_seed_level_is_corrected_for_few_seeds():
    # Three seeds scoring 0, 1, 2 on every image: s^2 = 1, so the mean over seeds has variance 1/3;
    # plain resampling of the seeds gives (2/3) * (1/3) = 2/9.
    scores = np.tile([0.0, 1.0, 2.0], (200_000, 1))
    plain = resampling.seed_means(scores, [[0, 1, 2]], np.random.default_rng(0), correct=False)[:, 0]
    fixed = resampling.seed_means(scores, [[0, 1, 2]], np.random.default_rng(0), correct=True)[:, 0]
    assert plain.var() == pytest.approx(2 / 9, rel=0.02)
    assert fixed.var() == pytest.approx(1 / 3, rel=0.02)
    assert fixed.mean() == pytest.approx(1.0, abs=0.01)
    one = resampling.seed_means(scores[:5, :1], [[0]], np.random.default_rng(0))
    assert (one == 0).all()  # one seed: no seed level


def test_engine_does_not_depend_on_the_number_of_processes(monkeypatch):
    monkeypatch.setattr(resampling, "CHUNK_ROWS", 40)  # several chunks
    gts, runs = caption_set(60, (0.1, 0.4, 0.8), seed=2)
    groups = [resampling.Group(runs[:2], [rouge_per_image(gts, r) for r in runs[:2]], [None, None]),
              resampling.Group(runs[2:], [rouge_per_image(gts, runs[2])], [None])]
    metrics = ("BLEU-4", "ROUGE-L", "CIDEr")
    one = resampling.resample_groups(gts, groups, metrics, 100, workers=1)
    two = resampling.resample_groups(gts, groups, metrics, 100, workers=2)
    for m in metrics:
        np.testing.assert_array_equal(one.samples[m], two.samples[m])
        assert one.samples[m].shape == (100, 2)
    # the full-set points are each seed's corpus score; the better captions score higher
    assert one.points["CIDEr"][0][0] > one.points["CIDEr"][0][1] > one.points["CIDEr"][1][0]


def test_sparse_cider_equals_the_one_resample_scorer():
    from bench.metrics.corpus import _Cider
    from tests.test_stats import with_edge_cases

    gts, runs = caption_set(50, (0.1, 0.6), seed=4)
    gts, runs[0] = with_edge_cases(gts, runs[0])
    ids = list(runs[0])
    cider = _Cider(gts, runs, ids)
    counts = resampling.draws(len(ids), 30, 0, 0)
    np.testing.assert_allclose(resampling._SparseCider(cider).score(counts), cider.score(counts, "distinct"),
                               rtol=1e-12, atol=1e-12)


def _model(caption: str) -> Model:
    return Model("shapes", "a", "diffusion", True, 0, gts={"i": ["a red circle"]},
                 runs=[Run("a-0", 0, {"i": [caption]}, {"i": {"ROUGE-L": 0.5}}, {"CIDEr": 1.0}, None)])


def test_a_rerun_with_the_same_inputs_reuses_the_comparisons(tmp_path, monkeypatch):
    import bench.compare as compare

    same, other = _model("a red circle"), _model("a blue circle")
    digest = compare.inputs_digest([same], 1000, ["CIDEr"])
    assert digest == compare.inputs_digest([_model("a red circle")], 1000, ["CIDEr"])
    assert digest != compare.inputs_digest([other], 1000, ["CIDEr"])  # a caption changed
    assert digest != compare.inputs_digest([same], 2000, ["CIDEr"])  # more resamples asked for
    assert digest != compare.inputs_digest([same], 1000, ["BLEU-4"])  # another primary family

    calls = []
    models = [same]
    monkeypatch.setattr(compare, "load_models", lambda *a, **k: models)
    monkeypatch.setattr(compare, "comparison_rows", lambda *a, **k: calls.append(1) or [])
    first = compare.compare_suite(tmp_path, [{}], echo=lambda _: None)
    messages: list[str] = []
    again = compare.compare_suite(tmp_path, [{}], echo=messages.append)
    assert first == again and len(calls) == 1 and "inputs unchanged" in messages[0]
    models[0] = other  # changed inputs: computed again
    compare.compare_suite(tmp_path, [{}], echo=lambda _: None)
    assert len(calls) == 2
    (tmp_path / "comparisons.md").unlink()  # a table missing: computed again
    compare.compare_suite(tmp_path, [{}], echo=lambda _: None)
    assert len(calls) == 3


def test_one_grid_for_quality_and_latency():
    from bench.phases.latency import decoding_grid, sweep_settings
    from tests.dummy import DummyCaptioner, DummyConfig

    captioner = DummyCaptioner(DummyConfig(0.0))  # declares steps (cost, own sweep 1, 5)
    assert decoding_grid(captioner, {}, {}) == {"steps": [1, 5]}
    assert decoding_grid(captioner, {}, {"sweep": {"steps": [2]}}) == {"steps": [2]}
    # the model's decoding.sweep wins over the suite's latency.sweep, for both phases
    assert decoding_grid(captioner, {"steps": [3, 4]}, {"sweep": {"steps": [2]}}) == {"steps": [3, 4]}
    assert sweep_settings(captioner, {"sweep": {"steps": [2]}}, {"steps": [3, 4]})["steps"][0] == [3, 4]


def test_cider_resamples_share_the_image_draws():
    from bench.metrics.stats import cider_d

    gts, runs = caption_set(40, (0.1, 0.1), seed=5)
    a = resampling.cider_resamples(gts, runs[0], 200)
    b = resampling.cider_resamples(gts, runs[1], 200)
    same = resampling.cider_resamples(gts, runs[0], 200)
    np.testing.assert_array_equal(a, same)  # deterministic
    assert a.shape == (200,) and np.quantile(a, 0.025) < cider_d(gts, runs[0])[0] < np.quantile(a, 0.975)
    # the same images drawn for both sets: their resampled scores move together, unlike other draws'
    apart = resampling.cider_resamples(gts, runs[1], 200, seed=1)
    assert np.corrcoef(a, b)[0, 1] > 0.2 > abs(np.corrcoef(a, apart)[0, 1])
