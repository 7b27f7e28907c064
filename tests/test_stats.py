"""Bootstrap intervals and paired tests (bench/metrics/stats.py), checked against pycocoevalcap."""

from __future__ import annotations

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from bench.metrics import stats

WORDS = [f"w{i}" for i in range(40)]


def caption_set(n: int, noises: tuple[float, ...] = (0.3,), seed: int = 0):
    """n images with five references each, noisy copies of a hidden sentence (already "tokenised").

    Returns gts and one res per noise level: the caption of an image is the hidden sentence with that
    fraction of words replaced (and a third as many dropped), so lower noise means a better model.
    """
    rng = np.random.default_rng(seed)

    def vary(base: list[str], p: float) -> str:
        return " ".join(w if rng.random() > p else str(rng.choice(WORDS)) for w in base if rng.random() > p / 3)

    gts: dict[str, list[str]] = {}
    res: list[dict[str, list[str]]] = [{} for _ in noises]
    for k in range(n):
        base = [str(w) for w in rng.choice(WORDS, rng.integers(6, 13))]
        gts[f"im{k:04d}"] = [vary(base, 0.2) for _ in range(5)]
        for r, noise in zip(res, noises, strict=True):
            r[f"im{k:04d}"] = [vary(base, noise)]
    return gts, res


def with_edge_cases(gts, res):
    """Captions that exercise CIDEr-D's corners: empty, one word, unseen words, clipped repeats."""
    ids = list(res)
    res = dict(res)
    res[ids[0]] = [""]
    res[ids[1]] = ["w1"]
    res[ids[2]] = ["never seen words"]
    res[ids[3]] = [" ".join([gts[ids[3]][0].split()[0]] * 6)]
    return gts, res


def rouge_per_image(gts, res) -> dict[str, dict[str, float]]:
    _, scores = Rouge().compute_score(gts, res)
    return {i: {"ROUGE-L": float(s)} for i, s in zip(res, scores, strict=True)}


def resampled_set(gts, res, draws):
    """The resampled set as pycocoevalcap would take it: each drawn copy under its own key."""
    ids = list(res)
    keys = [f"{ids[d]}#{n}" for n, d in enumerate(draws)]
    return ({k: gts[ids[d]] for k, d in zip(keys, draws, strict=True)},
            {k: res[ids[d]] for k, d in zip(keys, draws, strict=True)})


def test_cider_d_equals_pycocoevalcap():
    gts, (res,) = caption_set(120)
    gts, res = with_edge_cases(gts, res)
    theirs, their_scores = Cider().compute_score(gts, res)
    ours, our_scores = stats.cider_d(gts, res)
    assert ours == pytest.approx(theirs, rel=1e-12)
    np.testing.assert_allclose(our_scores, their_scores, rtol=1e-12, atol=1e-14)


def test_bleu_from_sufficient_statistics_equals_pycocoevalcap_exactly():
    gts, (res,) = caption_set(120)
    gts, res = with_edge_cases(gts, res)
    theirs, _ = Bleu(4).compute_score(gts, res, verbose=0)
    assert stats.bleu(gts, res) == theirs


def test_a_resample_scores_as_pycocoevalcap_on_the_resampled_set():
    gts, (res,) = caption_set(60)
    ids = list(res)
    draws = np.random.default_rng(3).integers(0, len(ids), len(ids))
    counts = np.bincount(draws, minlength=len(ids)).astype(float)[None]
    assert counts.max() > 1  # the draw has duplicates, the case that matters
    dup_gts, dup_res = resampled_set(gts, res, draws)

    bleu = stats._Bleu(gts, res, ids).score(counts)[0]
    np.testing.assert_allclose(bleu, Bleu(4).compute_score(dup_gts, dup_res, verbose=0)[0], rtol=1e-12)

    cider = stats._Cider(gts, [res], ids)
    # "copies": each drawn copy is a document of its own.
    assert cider.score(counts, "copies")[0, 0] == pytest.approx(Cider().compute_score(dup_gts, dup_res)[0],
                                                                rel=1e-12)
    # "distinct": pycocoevalcap on the distinct drawn images, each image weighted by its count.
    drawn = [i for i, c in zip(ids, counts[0], strict=True) if c > 0]
    _, per_image = Cider().compute_score({i: gts[i] for i in drawn}, {i: res[i] for i in drawn})
    expected = np.average(per_image, weights=counts[0][counts[0] > 0])
    assert cider.score(counts, "distinct")[0, 0] == pytest.approx(expected, rel=1e-12)


def test_interval_contains_the_point_and_narrows_with_more_images():
    metrics = ("BLEU-4", "CIDEr", "ROUGE-L")
    widths = {}
    for n in (50, 400):
        gts, (res,) = caption_set(n, seed=n)
        intervals = stats.bootstrap_ci(gts, res, metrics, per_image=rouge_per_image(gts, res), n_resamples=200)
        for metric, ci in intervals.items():
            assert ci.low <= ci.point <= ci.high, (n, metric, ci)
            assert (ci.n_images, ci.n_resamples, ci.confidence) == (n, 200, 0.95)
            widths[n, metric] = ci.high - ci.low
    for metric in metrics:
        # The width shrinks about as 1/sqrt(n): sqrt(8) ~ 2.8 times here.
        assert widths[400, metric] < 0.6 * widths[50, metric], (metric, widths)


def test_points_are_the_corpus_scores():
    gts, (res,) = caption_set(80)
    per_image = rouge_per_image(gts, res)
    intervals = stats.bootstrap_ci(gts, res, ("BLEU-1", "BLEU-4", "CIDEr", "ROUGE-L"), per_image=per_image,
                                   n_resamples=20)
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    assert intervals["BLEU-1"].point == bleu[0]
    assert intervals["BLEU-4"].point == bleu[3]
    assert intervals["CIDEr"].point == pytest.approx(Cider().compute_score(gts, res)[0], rel=1e-12)
    assert intervals["ROUGE-L"].point == pytest.approx(Rouge().compute_score(gts, res)[0], rel=1e-12)


def test_a_per_image_metric_is_translated_to_the_official_corpus_value():
    # METEOR's corpus score is the Java tool's aggregate, not the mean of per-image scores.
    gts, (res,) = caption_set(60)
    rng = np.random.default_rng(0)
    per_image = {i: {"METEOR": float(rng.uniform(0.1, 0.5))} for i in res}
    mean = float(np.mean([s["METEOR"] for s in per_image.values()]))
    plain = stats.bootstrap_ci(gts, res, ("METEOR",), per_image=per_image, n_resamples=100)["METEOR"]
    moved = stats.bootstrap_ci(gts, res, ("METEOR",), per_image=per_image, corpus={"METEOR": mean - 0.03},
                               n_resamples=100)["METEOR"]
    assert plain.point == pytest.approx(mean)
    assert moved.point == pytest.approx(mean - 0.03)
    assert moved.low == pytest.approx(plain.low - 0.03)
    assert moved.high == pytest.approx(plain.high - 0.03)


@pytest.mark.parametrize("metric", ["CIDEr", "BLEU-4", "ROUGE-L"])
def test_a_model_against_itself_gives_p_one(metric):
    gts, (res,) = caption_set(100)
    per_image = rouge_per_image(gts, res)
    result = stats.paired_test(gts, res, dict(res), metric, per_image=(per_image, per_image), n_resamples=200)
    assert result.delta == 0 and result.score_a == result.score_b
    assert result.p_value == 1.0
    assert result.low == result.high == 0
    assert (result.n_resamples, result.n_images) == (200, 100)


@pytest.mark.parametrize("metric", ["CIDEr", "BLEU-4", "ROUGE-L"])
def test_a_clearly_better_model_gives_a_small_p(metric):
    gts, (good, bad) = caption_set(100, noises=(0.2, 0.5))
    per_image = (rouge_per_image(gts, good), rouge_per_image(gts, bad))
    result = stats.paired_test(gts, good, bad, metric, per_image=per_image, n_resamples=500)
    assert result.delta > 0 and result.low > 0
    assert result.p_value < 0.01
    reverse = stats.paired_test(gts, bad, good, metric, per_image=per_image[::-1], n_resamples=500)
    assert reverse.delta == pytest.approx(-result.delta)
    assert reverse.p_value == result.p_value


def test_deterministic_for_a_seed():
    gts, (res,) = caption_set(60)
    run = lambda seed: stats.bootstrap_ci(gts, res, ("BLEU-4", "CIDEr"), n_resamples=50, seed=seed)  # noqa: E731
    assert run(1) == run(1)
    assert run(1) != run(2)


def test_distinct_df_is_unbiased_where_copies_are_not():
    # Why cider_df="distinct" is the default: duplicate copies make an image's rare n-grams look common.
    gts, (res,) = caption_set(300, seed=5)
    ids = list(res)
    cider = stats._Cider(gts, [res], ids)
    point = cider.per_image(np.ones(len(ids)))[0].mean()
    rng = np.random.default_rng(0)
    counts = np.stack([np.bincount(rng.integers(0, len(ids), len(ids)), minlength=len(ids))
                       for _ in range(200)]).astype(float)
    copies, distinct = cider.score(counts, "copies")[:, 0], cider.score(counts, "distinct")[:, 0]
    # Bias in standard deviations: about -0.6 with copies and -0.1 distinct here (on COCO-like text with
    # a large vocabulary, -1.6 and 0.0).
    assert abs(distinct.mean() - point) < 0.25 * distinct.std()
    assert copies.mean() < point - 0.4 * copies.std()


def test_bad_inputs_are_named():
    gts, (a, b) = caption_set(10, noises=(0.2, 0.5))
    with pytest.raises(ValueError, match="pass per_image"):
        stats.bootstrap_ci(gts, a, ("METEOR",))
    with pytest.raises(ValueError, match="lacks ROUGE-L"):
        stats.bootstrap_ci(gts, a, ("ROUGE-L",), per_image={i: {} for i in a})
    with pytest.raises(ValueError, match="cider_df"):
        stats.bootstrap_ci(gts, a, ("CIDEr",), cider_df="unique")
    with pytest.raises(ValueError, match="confidence"):
        stats.bootstrap_ci(gts, a, ("CIDEr",), confidence=95)
    with pytest.raises(ValueError, match="n_resamples"):
        stats.bootstrap_ci(gts, a, ("BLEU-4",), n_resamples=0)
    with pytest.raises(ValueError, match="same ones"):
        stats.paired_test(gts, a, {i: b[i] for i in list(b)[:5]})
    with pytest.raises(ValueError, match="no references"):
        stats.bootstrap_ci({}, a, ("BLEU-4",))
    with pytest.raises(ValueError, match="exactly one caption"):
        stats.bleu(gts, {i: ["x", "y"] for i in a})


@pytest.mark.java
def test_ptb_tokenised_shapes_captions(tiny_shapes):
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    from bench.metrics.quality import english_jvm

    refs = tiny_shapes.references("test")
    ids = sorted(refs)
    # Captions of mixed quality, with the capitals and punctuation the tokenizer removes.
    captions = {i: (refs[i][0].upper() + " ." if n % 2 else refs[ids[n - 1]][1]) for n, i in enumerate(ids)}
    with english_jvm():
        tokenizer = PTBTokenizer()
        gts = tokenizer.tokenize({i: [{"caption": r} for r in refs[i]] for i in ids})
        res = tokenizer.tokenize({i: [{"caption": captions[i]}] for i in ids})
    intervals = stats.bootstrap_ci(gts, res, ("BLEU-4", "CIDEr"), n_resamples=200)
    assert intervals["BLEU-4"].point == Bleu(4).compute_score(gts, res, verbose=0)[0][3]
    assert intervals["CIDEr"].point == pytest.approx(Cider().compute_score(gts, res)[0], rel=1e-12)
    for ci in intervals.values():
        assert ci.low <= ci.point <= ci.high
