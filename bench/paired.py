"""The suite's statistics after the jobs: seed intervals and paired tests, in two declared families.

bench/compare.py loads the models and writes the files; this module computes, per task, one two-level
bootstrap for all models at once (bench/metrics/resampling.py) and derives from it:

- each model's mean over seeds, sd and 95% two-level interval (seed level small-sample corrected);
- paired tests A - B: every learned model of one paradigm against every learned model of each other
  paradigm (quality metrics), and every learned model against the best trivial reference;
- two families, each Holm-adjusted on its own: the primary family is the cross-paradigm tests of the
  quality metrics the suite declares (`compare.primary` in bench.yaml), the secondary family is the rest
  (other quality metrics, the reference tests).

Diversity is not tested here: two models' default sampling points sit at different quality, and a
difference in diversity there says as much about quality as about the sampler. It is compared at matched
mean-of-k CIDEr along each model's temperature sweep (bench/report/diversity.py), outside these families.
- for each test, besides the unadjusted percentile interval (labelled so), a Holm-adjusted interval:
  the symmetric bootstrap interval d +- h that inverts the test at the level of its Holm step
  (alpha x p / p_Holm), so that it excludes 0 exactly when p_Holm <= alpha;
- enough resamples that a p-value at its floor 1 / (B + 1) is at most alpha / (4 m) for m tests; a p at
  the floor is only an upper bound and is printed as "<= x".
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.metrics.catalog import EXTRA_METRICS, higher_is_better
from bench.metrics.quality import TABLE_METRICS
from bench.metrics.quality import TABLE_METRICS as METRICS

PRIMARY = "CIDEr"  # ranks the trivial references
#: The primary family's quality metrics when the suite declares none (`compare.primary`).
DEFAULT_PRIMARY = TABLE_METRICS  # BLEU-4, METEOR, ROUGE-L, CIDEr, SPICE
N_RESAMPLES = 1000
CONFIDENCE = 0.95
ALPHA = 0.05
FLOOR_FACTOR = 4  # the p floor 1 / (B + 1) is at most alpha / (FLOOR_FACTOR x tests)


@dataclass
class Run:
    """One finished job's scored captions, tokenised as pycocoevalcap scored them."""

    job_id: str
    seed: int
    res: dict[str, list[str]]  # image_id -> [PTB-tokenised caption]
    per_image: dict[str, dict[str, float]]
    corpus: dict[str, float]
    meteor: dict[str, list[float]] | None


@dataclass
class Model:
    """One labelled model on one task, with all of its seeds."""

    task: str
    label: str
    paradigm: str
    trainable: bool
    order: int
    gts: dict[str, list[str]] = field(repr=False, default_factory=dict)
    runs: list[Run] = field(default_factory=list)

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]

    def metrics(self) -> list[str]:
        return [m for m in (*METRICS, *EXTRA_METRICS) if all(m in r.corpus for r in self.runs)]


def pairs(models: Sequence[Model]) -> list[tuple[str, Model, Model]]:
    """(kind, A, B) of one task's models: across declared paradigms (learned), and learned vs best reference."""
    learned = [m for m in models if m.trainable]
    # Grouped by the label each model declares, in suite order; no paradigm is special.
    groups: dict[str, list[Model]] = {}
    for m in sorted(learned, key=lambda m: m.order):
        groups.setdefault(m.paradigm, [])
    for m in learned:
        groups[m.paradigm].append(m)
    labels = list(groups)
    out = []
    for n, pa in enumerate(labels):
        for pb in labels[n + 1:]:
            out += [("paradigm", a, b) for a in groups[pa] for b in groups[pb]]
    references = [m for m in models if not m.trainable and PRIMARY in m.metrics()]
    if references:
        best = max(references, key=lambda m: sum(r.corpus[PRIMARY] for r in m.runs) / len(m.runs))
        out += [("reference", a, best) for a in learned]
    return out


def count_tests(models: Sequence[Model]) -> int:
    """Every test the suite makes (the quality metrics of every pair)."""
    tests = 0
    for task in dict.fromkeys(m.task for m in models):
        mine = [m for m in models if m.task == task]
        common = _metrics(mine)
        tests += len(common) * len(pairs(mine))
    return tests


def resamples_for(models: Sequence[Model], n_resamples: int = N_RESAMPLES) -> int:
    """At least `n_resamples`, and enough that the p floor 1 / (B + 1) is at most alpha / (4 m) for the m
    tests of the suite (so a difference no resample reaches stays significant after Holm with room to
    spare, and the Holm-adjusted intervals have tails to stand on). Rounded up to a thousand."""
    needed = math.ceil(FLOOR_FACTOR * count_tests(models) / ALPHA) - 1
    return max(n_resamples, 1000 * math.ceil(needed / 1000))


def _metrics(models: Sequence[Model]) -> list[str]:
    """The quality metrics every model of a task has (one engine resamples them all together)."""
    return [x for x in (*METRICS, *EXTRA_METRICS) if all(x in m.metrics() for m in models)]


def _common(models: Sequence[Model]) -> list[str]:
    return sorted(set.intersection(*(set(r.res) for m in models for r in m.runs)))


def task_resamples(models: Sequence[Model], meteor_score, n_resamples: int, workers: int | None = None):
    """One two-level bootstrap of every quality metric for all `models` of one task (the same images)."""
    from bench.metrics.resampling import Group, resample_groups

    ids = _common(models)
    groups = [Group([{i: r.res[i] for i in ids} for r in m.runs],
                    [{i: r.per_image.get(i, {}) for i in ids} for r in m.runs],
                    [None if r.meteor is None else {i: r.meteor[i] for i in ids} for r in m.runs])
              for m in models]
    return resample_groups({i: models[0].gts[i] for i in ids}, groups, _metrics(models), n_resamples,
                           meteor_score=meteor_score, workers=workers)


def p_value(deltas: np.ndarray, delta: float) -> float:
    """Two-sided bootstrap p of delta = 0: (1 + #{|d* - d| >= |d|}) / (1 + B) (centred under the null)."""
    return (1 + int(np.count_nonzero(np.abs(deltas - delta) >= abs(delta)))) / (1 + len(deltas))


def seed_row(model: Model, index: int, resamples) -> dict[str, Any]:
    """A model's mean, sd over seeds and two-level interval of every metric, from the task's resamples."""
    metrics = {}
    for m, points in resamples.points.items():
        seeds = points[index]
        low, high = np.quantile(resamples.samples[m][:, index], [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
        metrics[m] = {"mean": float(statistics.mean(seeds)),
                      "sd": float(statistics.stdev(seeds)) if len(seeds) > 1 else 0.0,
                      "low": float(low), "high": float(high), "per_seed": list(seeds)}
    return {"task": model.task, "model": model.label, "paradigm": model.paradigm, "learned": model.trainable,
            "seeds": model.seeds, "images": resamples.n_images, "metrics": metrics}


def test_row(kind: str, a: Model, b: Model, metric: str, score_a: float, score_b: float, deltas: np.ndarray,
             seeds: tuple[list[int], list[int]], n_images: int) -> dict[str, Any]:
    """One paired test from the two models' resampled means (`deltas` = A - B per resample)."""
    delta = score_a - score_b
    low, high = np.quantile(deltas, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return {"task": a.task, "kind": kind, "model_a": a.label, "paradigm_a": a.paradigm, "model_b": b.label,
            "paradigm_b": b.paradigm, "metric": metric,
            "higher_is_better": higher_is_better(metric),
            "score_a": score_a, "score_b": score_b, "delta": delta, "low": float(low), "high": float(high),
            "p": p_value(deltas, delta), "p_floor": 1 / (1 + len(deltas)),
            "seeds_a": seeds[0], "seeds_b": seeds[1], "images": n_images,
            "_spread": np.sort(np.abs(deltas - delta))[::-1]}


def holm(p_values: Sequence[float]) -> list[float]:
    from bench.metrics.stats import holm as _holm

    return _holm(p_values)


def adjusted_interval(delta: float, spread: np.ndarray, level: float) -> tuple[float, float]:
    """Symmetric interval d +- h that excludes 0 exactly when the bootstrap p is at most `level`.

    `spread`: |d* - d| sorted in decreasing order. p <= level iff #{|d* - d| >= |d|} <= K with
    K = floor(level (B + 1)) - 1, iff |d| > spread[K]: so h = spread[K] (0 excluded when |d| > h).
    """
    k = math.floor(level * (len(spread) + 1) + 1e-9) - 1
    if k < 0:
        return -math.inf, math.inf
    h = float(spread[min(k, len(spread) - 1)])
    return delta - h, delta + h


def finish_family(rows: list[dict[str, Any]], family: str) -> None:
    """Holm over one family; each row's Holm-adjusted interval and whether it is significant."""
    for row, adjusted in zip(rows, holm([r["p"] for r in rows]), strict=True):
        row["family"] = family
        row["p_holm"] = adjusted
        row["significant"] = adjusted <= ALPHA
        level = ALPHA * row["p"] / adjusted  # the level of this test's Holm step
        low, high = adjusted_interval(row["delta"], row.pop("_spread"), level)
        row["low_holm"], row["high_holm"] = (None if math.isinf(low) else low), (None if math.isinf(high) else high)


def comparison_rows(models: Sequence[Model], meteor_score, n_resamples: int = N_RESAMPLES,
                    primary: Sequence[str] = DEFAULT_PRIMARY, workers: int | None = None,
                    seeds_out: list | None = None) -> list[dict[str, Any]]:
    """Every paired test of the suite, in two Holm families (module docstring); seed rows into `seeds_out`."""
    rows: list[dict[str, Any]] = []
    n_resamples = resamples_for(models, n_resamples)
    for task in dict.fromkeys(m.task for m in models):
        mine = [m for m in models if m.task == task]
        res = task_resamples(mine, meteor_score, n_resamples, workers)
        index = {id(m): g for g, m in enumerate(mine)}
        if seeds_out is not None:
            seeds_out += [seed_row(m, index[id(m)], res) for m in mine]
        for kind, a, b in pairs(mine):
            ga, gb = index[id(a)], index[id(b)]
            for metric, points in res.points.items():
                deltas = res.samples[metric][:, ga] - res.samples[metric][:, gb]
                rows.append(test_row(kind, a, b, metric, statistics.mean(points[ga]), statistics.mean(points[gb]),
                                     deltas, (a.seeds, b.seeds), res.n_images))
    first = [r for r in rows if r["kind"] == "paradigm" and r["metric"] in primary]
    second = [r for r in rows if not (r["kind"] == "paradigm" and r["metric"] in primary)]
    finish_family(first, "primary")
    finish_family(second, "secondary")
    return rows


def verdict_text(row: dict[str, Any]) -> str:
    if not row["significant"]:
        return "no significant difference"
    a_ahead = (row["delta"] > 0) == row.get("higher_is_better", True)
    return f"{row['model_a'] if a_ahead else row['model_b']} better"


def format_p(p: float, floor: float | None = None) -> str:
    """A p-value for a table; one at the resampling floor is an upper bound: "<= x"."""
    if floor is not None and p <= floor * (1 + 1e-9):
        return f"<= {floor:.2g}"
    return f"{p:.3g}" if p >= 0.001 else f"{p:.1e}"
