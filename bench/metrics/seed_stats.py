"""Two-level bootstrap over training seeds and test images (bench/metrics/stats.py resamples images only).

Training seeds (`seed_bootstrap_ci`, `seed_paired_test`): a trained model's score is the mean over its
seeds of the corpus score, and its uncertainty has two sources, the test images and the training run.
The two-level bootstrap draws, per resample, the seeds of each model with replacement and one multiset of
images shared by every seed and model (the design is crossed: every seed captions the same images, so
an image that is hard is hard for all of them), scores each drawn seed on that multiset and averages.
The image draws are the same stream as `bootstrap_ci`'s, so when all seeds caption identically the
interval equals the image-only one; when they disagree it is wider. With few seeds the seed level is
coarse (3 seeds: 10 distinct multisets) and slightly narrow here (a factor sqrt((S-1)/S) on its sd): the
suite's comparisons use bench/metrics/resampling.py instead, which corrects that seed level.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np

from bench.metrics.stats import (
    DEFAULT_METRICS,
    Gts,
    MeteorScore,
    MeteorStats,
    PairedResult,
    PerImage,
    Res,
    Scorer,
    _check,
    _check_confidence,
    _distinct,
    _draws,
    _meteor,
    _p_value,
    _percentiles,
    _scorer,
)

#: How the intervals of `seed_bootstrap_ci` are made, for the note under a table.
TWO_LEVEL_METHOD = ("two-level percentile bootstrap (training seeds, then test images shared by all seeds; "
                    "corpus metrics recomputed per resample: BLEU's summed statistics, CIDEr-D's df, "
                    "METEOR's summed statistics lines)")


@dataclass(frozen=True)
class SeedInterval:
    """A model's score over its training seeds, with the two-level bootstrap interval."""

    point: float  # mean over seeds of the corpus score on all images
    sd: float  # standard deviation of the per-seed corpus scores (ddof 1; 0 for one seed)
    low: float
    high: float
    seed_points: tuple[float, ...]  # each seed's corpus score, in the order given
    confidence: float
    n_resamples: int
    n_images: int


def _two_level(score: Scorer, n: int, columns: Sequence[Sequence[int]], n_resamples: int,
               seed: int) -> dict[str, np.ndarray]:
    """Per metric (R, G): each group's mean over its resampled seeds on each resample's images.

    `columns[g]` maps group g's seeds to the hypothesis sets scored by `score` (seeds with identical
    captions share one). Seeds come from a stream of their own, so the image draws are exactly those of
    `bench.metrics.stats._resample` for the same seed.
    """
    seed_rng = np.random.default_rng([seed, 1])
    width = max(max(c) for c in columns) + 1
    parts = []
    for counts in _draws(n, n_resamples, seed):
        scores, size = score(counts), len(counts)
        weights = []
        for cols in columns:
            picks = np.asarray(cols)[seed_rng.integers(0, len(cols), size=(size, len(cols)))]
            flat = (picks + width * np.arange(size)[:, None]).ravel()
            weights.append(np.bincount(flat, minlength=size * width).reshape(size, width) / len(cols))
        parts.append({m: np.stack([(v * w).sum(axis=1) for w in weights], axis=1) for m, v in scores.items()})
    return {m: np.concatenate([p[m] for p in parts]) for m in parts[0]}


def _seed_inputs(per_images, meteor_stats, n: int, what: str) -> tuple[list, list]:
    per = list(per_images) if per_images is not None else [None] * n
    met = list(meteor_stats) if meteor_stats is not None else [None] * n
    if len(per) != n or len(met) != n:
        raise ValueError(f"{what}: per_images and meteor_stats need one entry per seed ({n})")
    return per, met


def _seed_groups(gts: Gts, groups: Sequence[Sequence[Res]], per_images: Sequence, meteor_stats: Sequence,
                 metrics: Sequence[str], n_resamples: int, seed: int, cider_df: str,
                 meteor_score: MeteorScore | None) -> tuple[int, dict[str, list[list[float]]], dict[str, np.ndarray]]:
    """(images, {metric: per group, each seed's full-set score}, {metric: (R, G) two-level samples})."""
    if any(not runs for runs in groups):
        raise ValueError("each model needs at least one seed")
    runs = [r for g in groups for r in g]
    ids = _check(gts, runs)
    per, met = [], []
    for g, (runs_g, p, m) in enumerate(zip(groups, per_images, meteor_stats, strict=True)):
        p, m = _seed_inputs(p, m, len(runs_g), f"model {g + 1}")
        per += p
        met += m
    keep, column = _distinct(runs, per, met)  # identical seeds (and models) are scored once
    offsets = np.cumsum([0, *map(len, groups)])
    columns = [column[offsets[g]:offsets[g + 1]] for g in range(len(groups))]
    with ExitStack() as stack:
        meteor = _meteor(stack, metrics, [met[k] for k in keep], ids, len(keep), meteor_score)
        score, _ = _scorer(metrics, gts, [runs[k] for k in keep], ids, [per[k] for k in keep], cider_df, meteor)
        full = score(np.ones((1, len(ids))))
        samples = _two_level(score, len(ids), columns, n_resamples, seed)
    points = {m: [[float(full[m][0, c]) for c in cols] for cols in columns] for m in metrics}
    return len(ids), points, samples


def seed_bootstrap_ci(
    gts: Gts,
    runs: Sequence[Res],
    metrics: Sequence[str] = DEFAULT_METRICS,
    per_images: Sequence[PerImage | None] | None = None,
    meteor_stats: Sequence[MeteorStats | None] | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    cider_df: str = "distinct",
    meteor_score: MeteorScore | None = None,
) -> dict[str, SeedInterval]:
    """Mean over training seeds, its spread, and the two-level bootstrap interval (module docstring).

    `runs` holds one PTB-tokenised `res` per training seed of one model, all on the same images;
    `per_images`/`meteor_stats` one entry per seed, as for `bootstrap_ci`. One seed gives the interval of
    `bootstrap_ci` (without any `corpus` translation) and sd 0.
    """
    _check_confidence(confidence)
    n, points, samples = _seed_groups(gts, [runs], [per_images], [meteor_stats], metrics, n_resamples, seed,
                                      cider_df, meteor_score)
    out = {}
    for m in metrics:
        seeds = points[m][0]
        # statistics' exact arithmetic: seeds that agree give exactly their score and sd 0.
        sd = float(statistics.stdev(seeds)) if len(seeds) > 1 else 0.0
        low, high = _percentiles(samples[m][:, 0], confidence)
        out[m] = SeedInterval(float(statistics.mean(seeds)), sd, low, high, tuple(seeds), confidence,
                              n_resamples, n)
    return out


def seed_paired_test(
    gts: Gts,
    runs_a: Sequence[Res],
    runs_b: Sequence[Res],
    metrics: Sequence[str] = ("CIDEr",),
    per_images: tuple[Sequence[PerImage | None] | None, Sequence[PerImage | None] | None] = (None, None),
    meteor_stats: tuple[Sequence[MeteorStats | None] | None, Sequence[MeteorStats | None] | None] = (None, None),
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    cider_df: str = "distinct",
    meteor_score: MeteorScore | None = None,
) -> dict[str, PairedResult]:
    """Paired two-level bootstrap of mean-over-seeds(A) - mean-over-seeds(B), per metric.

    Every resample draws one multiset of the shared images and, independently, each model's seeds with
    replacement (training runs of two models are not paired); all metrics share the resamples. A model
    against itself (the same runs) gives delta 0 and p = 1.
    """
    _check_confidence(confidence)
    n, points, samples = _seed_groups(gts, [runs_a, runs_b], per_images, meteor_stats, metrics, n_resamples,
                                      seed, cider_df, meteor_score)
    out = {}
    for m in metrics:
        a, b = (float(statistics.mean(x)) for x in points[m])
        deltas = samples[m][:, 0] - samples[m][:, 1]
        low, high = _percentiles(deltas, confidence)
        out[m] = PairedResult(m, a, b, a - b, low, high, _p_value(deltas, a - b), confidence, n_resamples, n,
                              (len(runs_a), len(runs_b)))
    return out
