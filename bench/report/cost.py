"""Quality against cost per pair of models, from the jobs' sweep.json and latency.json.

Each decoding setting of a model's grid (the eval sweep and the latency sweep share it) is a point: CIDEr
as the mean over every seed, batch-1 latency as the mean over the seeds that timed it (timing does not
depend on the seed). Each model's Pareto front over its settings (bench/metrics/front.py); each pair of
learned models of different paradigms is compared at CIDEr targets inside both reachable ranges (latency
ratio A / B) and at latencies inside both fronts' latency ranges (CIDEr A - B). Intervals: the sweep's
CIDEr resamples (the same image draws for every setting, seed and model), each resample's fronts
interpolated again; a resample where a target falls outside a front counts against the interval's
coverage and is reported.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np

from bench.metrics.front import Point, latency_at, latency_targets, pareto_front, quality_at, targets

CONFIDENCE = 0.95


@dataclass
class Curve:
    """A model's settings: points (latency s, mean CIDEr) and, when every seed kept them, (R,) resamples."""

    label: str
    points: list[Point]
    resamples: dict[str, np.ndarray]

    @property
    def front(self) -> list[Point]:
        return pareto_front(self.points)

    def resampled(self, r: int) -> list[Point] | None:
        if len(self.resamples) != len(self.points):
            return None
        return pareto_front([Point(p.latency, float(self.resamples[p.setting][r]), p.setting) for p in self.points])


def curve(entry) -> Curve:
    """The settings of a report entry (bench/report/data.py) with both CIDEr on every seed and a latency."""
    cider: dict[str, list[float]] = {}
    draws: dict[str, list[list[float]]] = {}
    seconds: dict[str, list[float]] = {}
    for run in entry.runs:
        for row in run.sweep:
            if "CIDEr" in row.get("corpus", {}):
                key = f"{row['knob']}={row['value']}"
                cider.setdefault(key, []).append(row["corpus"]["CIDEr"])
                if row.get("CIDEr_resamples"):
                    draws.setdefault(key, []).append(row["CIDEr_resamples"])
        for knob, timed in ((run.latency or {}).get("sweeps", {})).items():
            for s in timed:
                seconds.setdefault(f"{knob}={s.get('setting', {}).get(knob)}", []).append(s["median_s"])
    n = len(entry.runs)
    points, resamples = [], {}
    for key, values in cider.items():
        if len(values) == n and key in seconds:
            points.append(Point(statistics.fmean(seconds[key]), statistics.fmean(values), key))
            rows = draws.get(key, [])
            if len(rows) == n and len({len(r) for r in rows}) == 1:
                resamples[key] = np.mean(np.asarray(rows, float), axis=0)  # mean over seeds, per resample
    return Curve(entry.label, points, resamples)


@dataclass
class Compared:
    """One target of a pair: at CIDEr `level` the latencies and their ratio, or at latency `level` the
    CIDEr values and their difference; None where a model cannot reach the target."""

    kind: str  # "latency at CIDEr" | "CIDEr at latency"
    level: float
    a: float | None
    b: float | None
    value: float | None  # ratio A / B (latency) or difference A - B (CIDEr)
    low: float | None
    high: float | None
    reached: float  # share of resamples where both fronts reach the target (1.0 without resamples)


def _interval(samples: list[float | None]) -> tuple[float | None, float | None, float]:
    if not samples:
        return None, None, 1.0
    ok = [s for s in samples if s is not None]
    reached = len(ok) / len(samples)
    if reached < CONFIDENCE:  # too many resamples out of reach for a 95% interval
        return None, None, reached
    low, high = np.quantile(ok, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return float(low), float(high), reached


def compare_pair(a: Curve, b: Curve, n: int = 3) -> list[Compared]:
    """Latency ratio at each common CIDEr target, then CIDEr difference at each common latency."""
    fa, fb = a.front, b.front
    if not fa or not fb:
        return []
    rounds = min((len(next(iter(c.resamples.values()))) for c in (a, b) if c.resamples), default=0)
    fronts = [(a.resampled(r), b.resampled(r)) for r in range(rounds)]
    if any(x is None or y is None for x, y in fronts):
        fronts = []
    out = []
    for level in targets(fa, fb, n) + _beyond(fa, fb):
        ta, tb = latency_at(fa, level), latency_at(fb, level)
        samples = []
        for x, y in fronts:
            u, v = latency_at(x, level), latency_at(y, level)
            samples.append(None if u is None or v is None else u / v)
        low, high, reached = _interval(samples)
        out.append(Compared("latency at CIDEr", level, ta, tb, None if ta is None or tb is None else ta / tb,
                            low, high, reached))
    for level in latency_targets(fa, fb, n):
        qa, qb = quality_at(fa, level), quality_at(fb, level)
        samples = []
        for x, y in fronts:
            u, v = quality_at(x, level), quality_at(y, level)
            samples.append(None if u is None or v is None else u - v)
        low, high, reached = _interval(samples)
        out.append(Compared("CIDEr at latency", level, qa, qb, None if qa is None or qb is None else qa - qb,
                            low, high, reached))
    return out


def _beyond(fa: list[Point], fb: list[Point]) -> list[float]:
    """The better model's best CIDEr when the other cannot reach it (reported as unreachable)."""
    top_a, top_b = fa[-1].quality, fb[-1].quality
    return [max(top_a, top_b)] if top_a != top_b else []


def learned_curves(entries) -> dict[str, tuple[str, Curve]]:
    """label -> (paradigm, curve) of every learned model with at least one setting on both sweeps."""
    from bench.compare import declared_trainable

    out = {}
    for e in sorted(entries, key=lambda e: e.order):
        if declared_trainable(e.model, e.runs[0].result):
            c = curve(e)
            if c.points:
                out[e.label] = (e.paradigm, c)
    return out


def common_targets(curves: dict[str, tuple[str, Curve]]) -> list[float]:
    """The CIDEr targets of every pair of different paradigms (bench/report/verdict.py's latency rows)."""
    found: set[float] = set()
    items = list(curves.values())
    for n, (pa, a) in enumerate(items):
        for pb, b in items[n + 1:]:
            if pa != pb:
                found.update(targets(a.front, b.front))
    return sorted(found)


def pareto_fronts(entries, styles):
    """Each learned model's settings (CIDEr against batch-1 latency; markers) and its Pareto front
    (line), with the CIDEr targets at which pairs of paradigms are compared (dotted)."""
    from bench.report.plotting import CIDER, LATENCY, column_figure, legend_below, log_axis

    curves = learned_curves(entries)
    if not curves:
        return None
    fig, (ax,) = column_figure(legend_items=len(curves) + 2)
    xs = []
    for label, (_, c) in curves.items():
        style = styles[label]
        ax.scatter([1000 * p.latency for p in c.points], [100 * p.quality for p in c.points], s=14,
                   color=style.colour, marker=style.marker, alpha=0.45, linewidths=0)
        front = c.front
        ax.plot([1000 * p.latency for p in front], [100 * p.quality for p in front], color=style.colour,
                marker=style.marker, markersize=4, linewidth=1.4)
        xs += [1000 * p.latency for p in c.points]
    for level in common_targets(curves):
        ax.axhline(100 * level, color="0.55", linestyle=":", linewidth=0.9)
    if xs and max(xs) / max(min(xs), 1e-9) > 10:
        log_axis(ax.xaxis, ax.set_xscale, xs)
    ax.set(xlabel=LATENCY, ylabel=CIDER)
    legend_below(fig, styles, list(curves), [("Pareto front", "-"), ("CIDEr targets of the pairs", ":")])
    return fig
