"""Two-level bootstrap over training seeds and test images, paired tests across seeds, Holm's correction."""

from __future__ import annotations

import numpy as np
import pytest

from bench.metrics import seed_stats, stats
from tests.test_stats import caption_set, rouge_per_image

METRICS = ("BLEU-4", "CIDEr", "ROUGE-L")


def seeds_of(noises: tuple[float, ...], n: int = 120):
    gts, runs = caption_set(n, noises, seed=7)
    return gts, runs, [rouge_per_image(gts, r) for r in runs]


def test_seeds_that_agree_give_the_image_only_interval():
    gts, (res,), (per,) = seeds_of((0.3,))
    image_only = stats.bootstrap_ci(gts, res, METRICS, per_image=per, n_resamples=300, seed=5)
    two_level = seed_stats.seed_bootstrap_ci(gts, [res, res, res], METRICS, per_images=[per] * 3, n_resamples=300,
                                        seed=5)
    for m in METRICS:
        a, b = image_only[m], two_level[m]
        assert b.sd == 0.0
        assert (b.point, b.low, b.high) == pytest.approx((a.point, a.low, a.high), rel=1e-12)


def test_seeds_that_disagree_widen_the_interval():
    gts, runs, pers = seeds_of((0.1, 0.3, 0.5))
    two_level = seed_stats.seed_bootstrap_ci(gts, runs, METRICS, per_images=pers, n_resamples=300, seed=5)
    for m in METRICS:
        per_seed = [stats.bootstrap_ci(gts, r, (m,), per_image=p, n_resamples=300, seed=5)[m]
                    for r, p in zip(runs, pers, strict=True)]
        ci = two_level[m]
        assert ci.point == pytest.approx(np.mean([c.point for c in per_seed]))
        assert ci.sd == pytest.approx(np.std([c.point for c in per_seed], ddof=1))
        widest = max(c.high - c.low for c in per_seed)
        assert ci.high - ci.low > 1.5 * widest, (m, ci, widest)
        assert ci.low <= ci.point <= ci.high


def test_one_seed_is_the_image_bootstrap():
    gts, (res,), (per,) = seeds_of((0.3,))
    a = stats.bootstrap_ci(gts, res, METRICS, per_image=per, n_resamples=200, seed=1)
    b = seed_stats.seed_bootstrap_ci(gts, [res], METRICS, per_images=[per], n_resamples=200, seed=1)
    for m in METRICS:
        assert (b[m].low, b[m].high) == (a[m].low, a[m].high)


def test_a_model_against_itself_across_seeds_gives_p_one():
    gts, runs, pers = seeds_of((0.1, 0.3, 0.5))
    out = seed_stats.seed_paired_test(gts, runs, runs, METRICS, per_images=(pers, pers), n_resamples=200)
    for m in METRICS:
        assert out[m].delta == 0.0
        assert out[m].p_value == 1.0
        assert out[m].n_seeds == (3, 3)


def test_a_clearly_better_model_across_seeds_gives_a_small_p():
    gts, runs, pers = seeds_of((0.1, 0.12, 0.14, 0.5, 0.52, 0.55), n=200)
    out = seed_stats.seed_paired_test(gts, runs[:3], runs[3:], METRICS, per_images=(pers[:3], pers[3:]),
                                 n_resamples=500)
    for m in METRICS:
        r = out[m]
        assert r.delta > 0 and r.low > 0, r
        assert r.p_value < 0.01, r


def test_seed_spread_enters_the_paired_interval():
    # Same images, B's seeds scatter: its interval must be wider than with one fixed seed of B.
    gts, runs, pers = seeds_of((0.2, 0.1, 0.3, 0.5))
    one = seed_stats.seed_paired_test(gts, runs[:1], runs[2:3], ("CIDEr",), n_resamples=300)["CIDEr"]
    many = seed_stats.seed_paired_test(gts, runs[:1], runs[1:], ("CIDEr",), n_resamples=300)["CIDEr"]
    assert many.high - many.low > 1.5 * (one.high - one.low)


def test_holm_on_known_p_values():
    # Holm (1979): sorted p 0.01, 0.02, 0.03, 0.04 with m = 4 -> 0.04, 0.06, 0.06 (monotone), 0.06.
    assert stats.holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert stats.holm([0.001]) == [0.001]
    assert stats.holm([]) == []
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        stats.holm([0.2, 1.5])


def test_seed_inputs_are_checked():
    gts, runs, pers = seeds_of((0.1, 0.3))
    with pytest.raises(ValueError, match="one entry per seed"):
        seed_stats.seed_bootstrap_ci(gts, runs, ("ROUGE-L",), per_images=pers[:1])
    other = {k: v for k, v in list(runs[1].items())[1:]}
    with pytest.raises(ValueError, match="different images"):
        seed_stats.seed_bootstrap_ci(gts, [runs[0], other], ("CIDEr",))
