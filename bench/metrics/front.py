"""Quality against cost: each model's Pareto front, and two models compared along their own fronts.

A model's decoding settings (one grid, used by both the quality and the latency sweep) give points
(batch-1 latency, CIDEr). Its Pareto front keeps the settings no other setting beats on both: sorted by
latency, quality strictly rises. Between the front's points log latency is interpolated linearly in
quality (monotone: quality and latency rise together along a front), so

- `latency_at(front, q)`: the latency the model needs to reach CIDEr q, for q inside its reachable range
  [quality of its fastest front point, its best quality]; outside, None: never extrapolated;
- `quality_at(front, t)`: the dual, CIDEr at latency t, for t inside [fastest, slowest front latency].

Two models are compared at CIDEr targets inside both reachable ranges (`targets`), as the latency ratio
A / B, and at latencies inside both latency ranges (`latency_targets`), as the CIDEr difference A - B.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Point:
    """One decoding setting: batch-1 latency (s), quality (CIDEr) and a label naming the setting."""

    latency: float
    quality: float
    setting: str = ""


def pareto_front(points: Sequence[Point]) -> list[Point]:
    """The settings no other beats on both latency (lower) and quality (higher), fastest first."""
    for p in points:
        if not (p.latency > 0 and math.isfinite(p.latency) and math.isfinite(p.quality)):
            raise ValueError(f"setting {p.setting!r}: latency must be > 0 and finite and quality finite, got "
                             f"{p.latency!r}, {p.quality!r}")
    front: list[Point] = []
    for p in sorted(points, key=lambda p: (p.latency, -p.quality)):
        if not front or p.quality > front[-1].quality:
            front.append(p)
    return front


def reachable(front: Sequence[Point]) -> tuple[float, float]:
    """(quality of the fastest front point, best quality): the CIDEr targets the front interpolates."""
    return front[0].quality, front[-1].quality


def _interpolate(xs: Sequence[float], ys: Sequence[float], x: float) -> float | None:
    """Piecewise-linear y(x) on increasing xs; None outside [xs[0], xs[-1]] (no extrapolation)."""
    if not xs or x < xs[0] or x > xs[-1]:
        return None
    for k in range(len(xs) - 1):
        if xs[k] <= x <= xs[k + 1]:
            span = xs[k + 1] - xs[k]
            return ys[k] + (ys[k + 1] - ys[k]) * (x - xs[k]) / span if span > 0 else ys[k]
    return ys[-1]  # one point, x equal to it


def latency_at(front: Sequence[Point], quality: float) -> float | None:
    """Latency needed to reach `quality` (log latency linear in quality between front points), or None
    when `quality` is outside the front's reachable range."""
    log_t = _interpolate([p.quality for p in front], [math.log(p.latency) for p in front], quality)
    return None if log_t is None else math.exp(log_t)


def quality_at(front: Sequence[Point], latency: float) -> float | None:
    """Quality at `latency` (linear in log latency between front points), or None outside the front's
    latency range."""
    if latency <= 0:
        return None
    return _interpolate([math.log(p.latency) for p in front], [p.quality for p in front], math.log(latency))


def targets(a: Sequence[Point], b: Sequence[Point], n: int = 3) -> list[float]:
    """`n` evenly spaced CIDEr targets over the overlap of both reachable ranges (its ends included);
    one when the overlap is a single value, none when the ranges do not overlap."""
    low = max(reachable(a)[0], reachable(b)[0])
    high = min(reachable(a)[1], reachable(b)[1])
    if low > high:
        return []
    if low == high or n < 2:
        return [high]
    return [low + (high - low) * k / (n - 1) for k in range(n)]


def latency_targets(a: Sequence[Point], b: Sequence[Point], n: int = 3) -> list[float]:
    """`n` latencies spaced evenly in log over the overlap of both fronts' latency ranges (ends included)."""
    low = max(a[0].latency, b[0].latency)
    high = min(a[-1].latency, b[-1].latency)
    if low > high:
        return []
    if low == high or n < 2:
        return [high]
    return [math.exp(math.log(low) + (math.log(high) - math.log(low)) * k / (n - 1)) for k in range(n)]
