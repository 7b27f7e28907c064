"""Pareto fronts and comparisons along them (bench/metrics/front.py), on hand-made points."""

from __future__ import annotations

import math

import pytest

from bench.metrics.front import (
    Point,
    latency_at,
    latency_targets,
    pareto_front,
    quality_at,
    reachable,
    targets,
)

# A diffusion-like model: more steps, more quality, more time; "s8b" is dominated by "s8".
DIFF = [Point(0.004, 1.18, "s2"), Point(0.008, 1.50, "s4"), Point(0.016, 1.60, "s8"), Point(0.020, 1.55, "s8b"),
        Point(0.032, 1.80, "s24")]
# An autoregressive-like model: greedy fast and good, beams slower and no better.
AR = [Point(0.010, 1.70, "greedy"), Point(0.030, 1.70, "beam3"), Point(0.040, 1.90, "beam5")]


def test_front_keeps_the_undominated_settings_fastest_first():
    assert [p.setting for p in pareto_front(DIFF)] == ["s2", "s4", "s8", "s24"]
    assert [p.setting for p in pareto_front(AR)] == ["greedy", "beam5"]  # beam3: as good, slower
    assert reachable(pareto_front(DIFF)) == (1.18, 1.80)
    with pytest.raises(ValueError, match="latency must be > 0"):
        pareto_front([Point(0.0, 1.0, "zero")])


def test_latency_interpolates_log_latency_and_never_extrapolates():
    front = pareto_front(DIFF)
    assert latency_at(front, 1.50) == pytest.approx(0.008)  # a front point
    # halfway between s4 (1.50, 8 ms) and s8 (1.60, 16 ms): the geometric mean, 8 * sqrt(2) ms
    assert latency_at(front, 1.55) == pytest.approx(0.008 * math.sqrt(2))
    assert latency_at(front, 1.81) is None  # above its best: unreachable
    assert latency_at(front, 1.00) is None  # below its fastest point: not extrapolated
    assert quality_at(front, 0.008 * math.sqrt(2)) == pytest.approx(1.55)  # the dual
    assert quality_at(front, 0.002) is None and quality_at(front, 0.05) is None


def test_targets_lie_inside_both_reachable_ranges():
    a, b = pareto_front(DIFF), pareto_front(AR)
    # overlap of [1.18, 1.80] and [1.70, 1.90]: [1.70, 1.80]
    assert targets(a, b) == pytest.approx([1.70, 1.75, 1.80])
    # at 1.80: diffusion 32 ms; AR halfway (in quality) from greedy 10 ms to beam5 40 ms: 20 ms
    assert latency_at(a, 1.80) / latency_at(b, 1.80) == pytest.approx(0.032 / 0.020)
    assert latency_at(a, 1.90) is None  # the AR model's best is out of the diffusion model's reach
    assert latency_targets(a, b) == pytest.approx([0.010, math.sqrt(0.010 * 0.032), 0.032])
    assert targets(pareto_front([Point(1.0, 0.5)]), b) == []  # ranges apart: no common target
    assert targets(pareto_front([Point(1.0, 1.7)]), b) == [1.7]  # one common value


class _Run:
    result = {"train_seconds": 1.0}  # learned

    def __init__(self, knob: str, points: list[Point]):
        self.sweep = [{"knob": knob, "value": p.setting, "corpus": {"CIDEr": p.quality},
                       "CIDEr_resamples": [p.quality - 0.01, p.quality, p.quality + 0.01] * 20} for p in points]
        self.latency = {"sweeps": {knob: [{"setting": {knob: p.setting}, "median_s": p.latency} for p in points]}}


class _Entry:
    def __init__(self, label: str, knob: str, points: list[Point], paradigm: str = "", order: int = 0):
        self.label, self.runs = label, [_Run(knob, points)]
        self.model, self.paradigm, self.order = f"unregistered-{label}", paradigm, order


def test_pairs_are_compared_along_their_fronts_from_the_result_files():
    from bench.report.cost import compare_pair, curve

    diff, ar = curve(_Entry("diff", "steps", DIFF)), curve(_Entry("ar", "num_beams", AR))
    assert [p.setting for p in diff.front] == ["steps=s2", "steps=s4", "steps=s8", "steps=s24"]
    rows = compare_pair(diff, ar)
    at = {round(r.level, 4): r for r in rows if r.kind == "latency at CIDEr"}
    assert set(at) == {1.70, 1.75, 1.80, 1.90}
    assert at[1.80].value == pytest.approx(0.032 / 0.020)
    assert at[1.90].a is None and at[1.90].value is None  # out of the diffusion model's reach: said so
    # Resamples shift every setting by -0.01, 0 or +0.01: 1.75 stays reachable, and the interval holds
    # the ratios of the shifted fronts; 1.80 is out of the diffusion front's reach in a third of them.
    assert at[1.75].reached == 1.0 and at[1.75].low < at[1.75].value < at[1.75].high
    assert at[1.80].low is None and at[1.80].reached == pytest.approx(2 / 3)
    dual = [r for r in rows if r.kind == "CIDEr at latency"]
    assert dual[0].level == pytest.approx(0.010) and dual[0].value == pytest.approx(
        (1.50 + 0.10 * math.log(0.010 / 0.008) / math.log(2)) - 1.70)  # between s4 and s8, minus greedy


def test_front_figure_draws_fronts_and_the_pairs_targets():
    import matplotlib

    matplotlib.use("Agg")
    from bench.report.cost import common_targets, learned_curves, pareto_fronts
    from bench.report.plotting import model_styles

    entries = [_Entry("diff", "steps", DIFF, "diffusion", 0), _Entry("ar", "num_beams", AR, "autoregressive", 1)]
    assert common_targets(learned_curves(entries)) == pytest.approx([1.70, 1.75, 1.80])
    fig = pareto_fronts(entries, model_styles(["diff", "ar"]))
    ax = fig.axes[0]
    fronts = [line for line in ax.get_lines() if line.get_linestyle() == "-"]
    assert [len(line.get_xdata()) for line in fronts] == [4, 2]  # the fronts, dominated settings left out
    assert sorted(round(line.get_ydata()[0], 6) for line in ax.get_lines() if line.get_linestyle() == ":") == [
        170.0, 175.0, 180.0]
