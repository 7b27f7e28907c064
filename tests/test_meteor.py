"""Exact METEOR resampling from summed statistics lines (bench/metrics/meteor.py) against pycocoevalcap.

One METEOR process serves the module (it takes half a minute to load its paraphrase table); the golden
values come from pycocoevalcap's own `Meteor.compute_score` on that process.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest

from bench.metrics import seed_stats, stats
from tests.test_stats import caption_set, resampled_set

pytestmark = pytest.mark.java


@pytest.fixture(scope="module")
def jar():
    from bench.metrics.meteor import MeteorJar

    with MeteorJar() as jar:
        yield jar


@pytest.fixture(scope="module")
def data(jar):
    gts, (good, bad) = caption_set(40, (0.2, 0.6), seed=11)
    for i in list(good)[:4]:
        good[i] = [gts[i][0]]  # perfect one-chunk matches: the aggregation's special case
    return gts, good, bad, jar.stats(gts, good), jar.stats(gts, bad)


def pycoco(jar, gts, res) -> float:
    return jar._meteor.compute_score(gts, res)[0]


def test_a_resample_scores_as_pycocoevalcap_on_the_resampled_set(jar, data):
    gts, res, _, lines, _ = data
    ids = list(res)
    matrix = np.array([lines[i] for i in ids])
    draws = np.random.default_rng(4).integers(0, len(ids), len(ids))
    counts = np.bincount(draws, minlength=len(ids)).astype(float)
    assert counts.max() > 1 and counts[:4].sum() > 0  # duplicates, and the perfect match drawn
    ours, full = jar.score(np.stack([counts @ matrix, matrix.sum(axis=0)]))
    assert ours == pytest.approx(pycoco(jar, *resampled_set(gts, res, draws)), abs=1e-12)
    assert full == pytest.approx(pycoco(jar, gts, res), abs=1e-12)


def test_bootstrap_ci_with_statistics_is_exact_and_centred(jar, data):
    gts, res, _, lines, _ = data
    ci = stats.bootstrap_ci(gts, res, ("METEOR",), meteor_stats=lines, n_resamples=200,
                            meteor_score=jar.score)["METEOR"]
    assert ci.point == pytest.approx(pycoco(jar, gts, res), abs=1e-12)
    assert ci.low < ci.point < ci.high


def test_paired_tests_use_the_statistics(jar, data):
    gts, good, bad, good_lines, bad_lines = data
    same = stats.paired_test(gts, good, good, "METEOR", meteor_stats=(good_lines, good_lines), n_resamples=100,
                             meteor_score=jar.score)
    assert same.delta == 0.0 and same.p_value == 1.0
    better = seed_stats.seed_paired_test(gts, [good], [bad], ("METEOR",), meteor_stats=([good_lines], [bad_lines]),
                                    n_resamples=200, meteor_score=jar.score)["METEOR"]
    assert better.score_a == pytest.approx(pycoco(jar, gts, good), abs=1e-12)
    assert better.low > 0 and better.p_value < 0.01


# -- the pooled jar ----------------------------------------------------------------------------


def test_scorings_share_one_jar_and_a_dead_or_failed_one_is_replaced(monkeypatch):
    from bench.metrics import meteor
    from bench.metrics.quality import score_captions

    meteor.close_pool()
    refs = {"a": ["a red circle above a blue square"], "b": ["two green triangles"]}
    captions = {"a": "a red circle", "b": "three green triangles"}
    first = score_captions(captions, refs, ("METEOR",))
    pid = meteor._pool["meteor"].meteor_p.pid
    with meteor.MeteorJar() as jar:  # statistics borrow the same process, and give it back
        assert jar._meteor.meteor_p.pid == pid
        lines = jar.stats(refs, {i: [c] for i, c in captions.items()})
    assert meteor._pool["meteor"].meteor_p.pid == pid
    assert score_captions(captions, refs, ("METEOR",)).corpus == first.corpus

    meteor._pool["meteor"].meteor_p.kill()  # died while pooled: replaced, same scores
    meteor._pool["meteor"].meteor_p.wait()
    assert score_captions(captions, refs, ("METEOR",)).corpus == first.corpus
    replaced = meteor._pool["meteor"]
    assert replaced.meteor_p.pid != pid

    with pytest.raises(RuntimeError), meteor.MeteorJar() as jar:  # failed mid-use: closed, not pooled
        jar.score(np.array([lines["a"][:3]]))
    assert meteor._pool["meteor"] is None and replaced.meteor_p.poll() is not None

    with pytest.raises(OSError), meteor.pooled_meteor() as dying:  # pycocoevalcap's request fails holding
        dying.meteor_p.kill()                                     # its lock: released, so collecting the
        dying.meteor_p.wait()                                     # jar (its __del__ takes it) cannot hang
        dying.compute_score({"a": refs["a"]}, {"a": [captions["a"]]})
    assert not dying.lock.locked()
    del dying
    gc.collect()

    monkeypatch.setattr(meteor, "IDLE_SECONDS", 0.2)  # unused for IDLE_SECONDS: closed
    score_captions(captions, refs, ("METEOR",))
    idle = meteor._pool["meteor"]
    idle.meteor_p.wait(timeout=30)
    assert meteor._pool["meteor"] is None
