"""Bootstrap confidence intervals and paired significance tests for corpus caption metrics.

Everything works from PTB-tokenised texts (pycocoevalcap's shapes: `gts` image_id -> list of reference
strings, `res` image_id -> [caption]). A resample draws n images with replacement and recomputes each
corpus score the way pycocoevalcap computes it on a whole set (bench/metrics/corpus.py):

- BLEU-1..4 is corpus-level: clipped n-gram matches, n-gram counts and lengths are summed over the
  images, then the geometric mean and brevity penalty are taken; a resample is a weighted sum of each
  image's sufficient statistics (on all images: pycocoevalcap's `Bleu(4)` exactly).
- CIDEr-D: its idf depends on the set scored, so document frequencies and log(N) are recomputed for each
  resample. How duplicate draws count (`cider_df`): "distinct" (default): df and N come from the distinct
  images drawn, and each image's score counts as often as it was drawn. "copies": every drawn copy is a
  separate document, exactly `Cider` on the resampled set with duplicates under distinct keys. Copies
  make the rare n-grams of a duplicated image look common, an artefact of resampling that real test sets
  never show: on 5,000 COCO-like images it pulls the bootstrap mean 1.6 standard deviations below the
  point estimate, while "distinct" is unbiased to within 0.1 sd with the same spread.
- METEOR (exact, with `meteor_stats`): the Java tool's corpus METEOR scores the sum of per-image
  alignment statistics lines (it is not the mean of per-image scores: 0.293 vs 0.325 on the shapes
  task). Given each image's statistics line (bench/metrics/meteor.py), a resample's lines are summed with
  its counts and the sum is scored by the same jar: pycocoevalcap's METEOR on the resampled set exactly.
  Without `meteor_stats`, METEOR falls back to the mean of per-image scores translated to `corpus`.
- ROUGE-L and SPICE corpus scores are means of per-image scores, passed in as `per_image`; a corpus value
  given in `corpus=` translates the bootstrap distribution to it (point = reported number).

Training seeds: bench/metrics/seed_stats.py (`seed_bootstrap_ci`, `seed_paired_test`) resamples seeds and images
with the helpers here.

Intervals are percentile intervals. A paired test resamples the same images (and each model's seeds)
for both models and reports the bootstrap interval of the difference and a two-sided p-value from the
bootstrap distribution centred under the null (Efron & Tibshirani 1993, section 16.4; Berg-Kirkpatrick
et al. 2012): p = (1 + #{|d* - d| >= |d|}) / (1 + B). A model against itself gives p = 1 exactly.
`holm` adjusts a family of p-values (Holm 1979) for the comparisons of a suite.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np

from bench.metrics.corpus import MAX_N, SIGMA, Gts, Res, _Bleu, _caption, _Cider  # noqa: F401 - re-exported
from bench.metrics.quality import BLEU_METRICS, INTERVAL_METRICS

DEFAULT_METRICS = INTERVAL_METRICS
CIDER_DF = ("distinct", "copies")  # how a resample's duplicate images count in CIDEr-D's df
PerImage = Mapping[str, Mapping[str, float]]  # image_id -> metric -> score, as QualityScores.per_image
MeteorStats = Mapping[str, Sequence[float]]  # image_id -> METEOR statistics line (bench/metrics/meteor.py)
MeteorScore = Callable[[np.ndarray], np.ndarray]  # (N, K) summed statistics -> (N,) METEOR scores


@dataclass(frozen=True)
class Interval:
    """A bootstrap percentile interval of one corpus metric."""

    point: float  # the corpus score on all images
    low: float
    high: float
    confidence: float
    n_resamples: int
    n_images: int


@dataclass(frozen=True)
class PairedResult:
    """Model A minus model B on the same images, resampled jointly."""

    metric: str
    score_a: float
    score_b: float
    delta: float  # score_a - score_b
    low: float  # percentile interval of delta
    high: float
    p_value: float  # two-sided, null hypothesis delta = 0
    confidence: float
    n_resamples: int
    n_images: int
    n_seeds: tuple[int, int] = (1, 1)


def _check(gts: Gts, hyps: Sequence[Res]) -> list[str]:
    ids = list(hyps[0])
    if not ids:
        raise ValueError("no captions to resample")
    for res in hyps:
        if set(res) != set(ids):
            raise ValueError("the models (or seeds) caption different images; resampling needs the same ones")
    lacking = [i for i in ids if not gts.get(i)]
    if lacking:
        raise ValueError(f"{len(lacking)} captioned image(s) have no references, e.g. {lacking[:3]}")
    return ids


Scorer = Callable[[np.ndarray], dict[str, np.ndarray]]


def _meteor_arrays(meteor_stats: Sequence[MeteorStats | None] | None, ids: Sequence[str],
                   n_hyps: int) -> list[np.ndarray] | None:
    """Each hypothesis set's (n, K) METEOR statistics, or None when any set lacks them."""
    if meteor_stats is None or len(meteor_stats) != n_hyps or any(s is None for s in meteor_stats):
        return None
    try:
        arrays = [np.array([s[i] for i in ids], float) for s in meteor_stats]
    except KeyError as e:
        raise ValueError(f"meteor_stats lacks image {e}") from None
    if len({a.shape[1] for a in arrays}) != 1:
        raise ValueError("METEOR statistics lines differ in length")
    return arrays


def _scorer(metrics: Sequence[str], gts: Gts, hyps: Sequence[Res], ids: Sequence[str],
            per_images: Sequence[PerImage | None], cider_df: str,
            meteor: tuple[list[np.ndarray], MeteorScore] | None = None) -> tuple[Scorer, set[str]]:
    """A function from (R, n) image counts to {metric: (R, M) corpus scores of the M hypothesis sets},
    and the metrics it resamples as means of per-image scores (those a `corpus` value may translate)."""
    if cider_df not in CIDER_DF:
        raise ValueError(f"cider_df must be one of {CIDER_DF}, got {cider_df!r}")
    bleus = [_Bleu(gts, res, ids) for res in hyps] if set(metrics) & set(BLEU_METRICS) else []
    cider = _Cider(gts, hyps, ids) if "CIDEr" in metrics else None
    exact = {"METEOR"} if meteor is not None else set()
    means = {}
    for metric in dict.fromkeys(metrics):
        if metric in BLEU_METRICS or metric == "CIDEr" or metric in exact:
            continue
        means[metric] = per_image_matrix(per_images, ids, metric)

    def score(counts: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        pending = None
        if meteor is not None:
            stats, meteor_score = meteor
            summed = np.concatenate([counts @ s for s in stats])  # (M * R, K): model-major
            # The jar scores these while this thread does BLEU and CIDEr: most of METEOR's time is the
            # Java process working, which another core can do meanwhile. One call at a time: joined below.
            pending = _meteor_worker().submit(meteor_score, summed)
        try:
            if bleus:
                by_model = np.stack([b.score(counts) for b in bleus], axis=-1)  # (R, 4, M)
                out.update({m: by_model[:, n] for n, m in enumerate(BLEU_METRICS) if m in metrics})
            if cider is not None:
                out["CIDEr"] = cider.score(counts, cider_df)
        except BaseException:
            if pending is not None:
                wait([pending])  # the jar is not closed under a request still in flight
            raise
        if pending is not None:
            out["METEOR"] = np.asarray(pending.result(), float).reshape(len(meteor[0]), len(counts)).T
        out.update({m: counts @ v / counts.sum(axis=1, keepdims=True) for m, v in means.items()})
        return out

    return score, set(means)


@functools.cache
def _meteor_worker() -> ThreadPoolExecutor:
    """One background thread for the METEOR jar's requests (the jar answers one request at a time)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="meteor")


def _draws(n: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """(chunk, n) image counts of `n_resamples` bootstrap resamples, in chunks bounded in memory."""
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_resamples, 2 ** 20 // n))
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        draws = rng.integers(0, n, size=(size, n)) + n * np.arange(size)[:, None]
        yield np.bincount(draws.ravel(), minlength=size * n).reshape(size, n).astype(float)


def _resample(score: Scorer, n: int, n_resamples: int, seed: int) -> dict[str, np.ndarray]:
    parts = [score(counts) for counts in _draws(n, n_resamples, seed)]
    return {m: np.concatenate([p[m] for p in parts]) for m in parts[0]}


def per_image_matrix(per_images: Sequence, ids: Sequence[str], metric: str) -> np.ndarray:
    """(n images, M seeds) of a metric resampled as a mean of per-image scores; a ValueError names a
    missing record, a missing image or a non-finite score."""
    if any(p is None for p in per_images):
        raise ValueError(f"{metric} is resampled from per-image scores: pass per_image for every seed")
    try:
        values = np.array([[p[i][metric] for i in ids] for p in per_images], float)
    except KeyError as e:
        raise ValueError(f"per_image lacks {metric} for image {e}") from None
    if not np.isfinite(values).all():
        raise ValueError(f"per-image {metric} scores include NaN or infinity")
    return values.T


def _distinct(runs: Sequence[Res], *extra: Sequence) -> tuple[list[int], list[int]]:
    """Indices of the distinct caption sets among `runs` (with equal side inputs) and each run's column."""
    keep: list[int] = []
    column = []
    for k, res in enumerate(runs):
        same = next((j for j, u in enumerate(keep) if runs[u] == res and all(e[u] == e[k] for e in extra)), None)
        if same is None:
            keep.append(k)
            same = len(keep) - 1
        column.append(same)
    return keep, column


def _percentiles(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    low, high = np.quantile(samples, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _p_value(deltas: np.ndarray, delta: float) -> float:
    return (1 + int(np.count_nonzero(np.abs(deltas - delta) >= abs(delta)))) / (1 + len(deltas))


def _meteor(stack: ExitStack, metrics: Sequence[str], meteor_stats, ids: Sequence[str], n_hyps: int,
            meteor_score: MeteorScore | None) -> tuple[list[np.ndarray], MeteorScore] | None:
    """Exact METEOR inputs when asked for and given; starts the jar (closed with `stack`) if needed."""
    if "METEOR" not in metrics:
        return None
    arrays = _meteor_arrays(meteor_stats, ids, n_hyps)
    if arrays is None:
        return None
    if meteor_score is None:
        from bench.metrics.meteor import MeteorJar

        meteor_score = stack.enter_context(MeteorJar()).score
    return arrays, meteor_score


def bootstrap_ci(
    gts: Gts,
    res: Res,
    metrics: Sequence[str] = DEFAULT_METRICS,
    per_image: PerImage | None = None,
    corpus: Mapping[str, float] | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    cider_df: str = "distinct",
    meteor_stats: MeteorStats | None = None,
    meteor_score: MeteorScore | None = None,
) -> dict[str, Interval]:
    """Percentile bootstrap intervals of corpus metrics over the images of `res`.

    `gts`/`res` are PTB-tokenised (as pycocoevalcap's scorers take them). BLEU-1..4 and CIDEr are
    recomputed per resample from the texts; METEOR from `meteor_stats` (per-image statistics lines,
    summed per resample and scored by `meteor_score`, default: the METEOR jar) when given; other metrics
    (ROUGE-L, SPICE, METEOR without statistics) are means of `per_image[image_id][metric]`, translated to
    `corpus[metric]` when given. All metrics share the same resamples; deterministic for a seed.
    """
    _check_confidence(confidence)
    ids = _check(gts, [res])
    with ExitStack() as stack:
        meteor = _meteor(stack, metrics, [meteor_stats], ids, 1, meteor_score)
        score, translated = _scorer(metrics, gts, [res], ids, [per_image], cider_df, meteor)
        points = {m: float(v[0, 0]) for m, v in score(np.ones((1, len(ids)))).items()}
        samples = _resample(score, len(ids), n_resamples, seed)
    out = {}
    for m in metrics:
        shift = corpus[m] - points[m] if corpus is not None and m in corpus and m in translated else 0.0
        low, high = _percentiles(samples[m][:, 0], confidence)
        out[m] = Interval(points[m] + shift, low + shift, high + shift, confidence, n_resamples, len(ids))
    return out


def paired_test(
    gts: Gts,
    res_a: Res,
    res_b: Res,
    metric: str = "CIDEr",
    per_image: tuple[PerImage, PerImage] | None = None,
    corpus: tuple[Mapping[str, float], Mapping[str, float]] | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    cider_df: str = "distinct",
    meteor_stats: tuple[MeteorStats, MeteorStats] | None = None,
    meteor_score: MeteorScore | None = None,
) -> PairedResult:
    """Paired bootstrap of `metric`(A) - `metric`(B) over the same images.

    Each resample draws one multiset of images and scores both models on it (for CIDEr with the same
    document frequencies, for METEOR from summed statistics when `meteor_stats` is given).
    `per_image`/`corpus`/`meteor_stats` are (A, B) pairs. The p-value is two-sided for delta = 0.
    """
    _check_confidence(confidence)
    ids = _check(gts, [res_a, res_b])
    with ExitStack() as stack:
        meteor = _meteor(stack, [metric], meteor_stats, ids, 2, meteor_score)
        score, translated = _scorer([metric], gts, [res_a, res_b], ids,
                                    list(per_image) if per_image else [None, None], cider_df, meteor)
        a, b = (float(x) for x in score(np.ones((1, len(ids))))[metric][0])
        samples = _resample(score, len(ids), n_resamples, seed)[metric]
    shift = 0.0
    if corpus is not None and metric in translated:
        # Translate per-image means to the official corpus values (see the module docstring).
        shift = (corpus[0][metric] - corpus[1][metric]) - (a - b)
        a, b = float(corpus[0][metric]), float(corpus[1][metric])
    deltas = samples[:, 0] - samples[:, 1] + shift
    delta = float(a - b)
    low, high = _percentiles(deltas, confidence)
    return PairedResult(metric, a, b, delta, low, high, _p_value(deltas, delta), confidence, n_resamples,
                        len(ids))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (step-down, family-wise error), in the order given.

    The k-th smallest p (k = 0..m-1) becomes max over j <= k of (m - j) * p_(j), capped at 1; reject at
    level alpha where the adjusted p <= alpha.
    """
    p = np.asarray(p_values, float)
    if p.size == 0:
        return []
    if ((p < 0) | (p > 1) | ~np.isfinite(p)).any():
        raise ValueError(f"p-values must lie in [0, 1], got {list(p_values)}")
    order = np.argsort(p, kind="stable")
    scaled = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
    out = np.empty_like(p)
    out[order] = np.minimum(scaled, 1.0)
    return [float(x) for x in out]


def cider_d(gts: Gts, res: Res) -> tuple[float, np.ndarray]:
    """CIDEr-D of `res` on all its images: (corpus score, per-image scores in `res` order).

    Equal to pycocoevalcap's `Cider().compute_score(gts, res)` up to float rounding.
    """
    ids = _check(gts, [res])
    per_image = _Cider(gts, [res], ids).per_image(np.ones(len(ids)))[0]
    return float(per_image.mean()), per_image


def bleu(gts: Gts, res: Res) -> list[float]:
    """Corpus BLEU-1..4 of `res`, identical to pycocoevalcap's `Bleu(4)` (closest reference length)."""
    ids = _check(gts, [res])
    return [float(s) for s in _Bleu(gts, res, ids).score(np.ones((1, len(ids))))[0]]
