"""Figures for papers (seaborn on matplotlib): PNG (200 dpi) and PDF, single-column width.

Every model keeps one colour and one marker in every figure (labels sorted, then seaborn's colour-blind
palette in that order), so a reader can follow a model across figures, in greyscale too. A figure whose
data no model has is not written at all (no empty plots). Figures are built on `matplotlib.figure.Figure`
objects, never pyplot: no GUI backend is touched (it renders with Agg) and no global state leaks into
the caller. Saved files carry fixed metadata and no creation date, so the same results give the same
bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.report.data import Entry
from bench.report.figures_errprop import error_injection, exposure_gap, quality_by_length
from bench.report.plotting import (
    CIDER,
    LATENCY,
    RC,
    Style,
    column_figure,
    integer_ticks,
    legend_below,
    level_line,
    log_axis,
    log_ticks,
    model_line,
    save_figure,
    value_spread,
)


def _default_cider(entry: Entry) -> float | None:
    value = entry.metric("CIDEr")
    return None if value is None else 100 * value[0]


def _knob_points(entry: Entry, knob: str) -> list[dict[str, Any]]:
    points = []
    for run in entry.runs:
        rows = [r for r in run.sweep if r.get("knob") == knob and "CIDEr" in r.get("corpus", {})]
        points += [{"x": float(r["value"]), "y": 100 * r["corpus"]["CIDEr"]} for r in rows]
        default = (run.scores or {}).get("decoding", {}).get(knob)
        if default is not None and run.corpus("CIDEr") is not None and \
                str(default) not in {str(r["value"]) for r in rows}:
            points.append({"x": float(default), "y": 100 * run.corpus("CIDEr")})
    return points


def _knob_label(entries: list[Entry], knob: str) -> str:
    """The label the captioners declare for `knob` (the first that records one), else its name."""
    return next((label for e in entries if (label := e.knob_label(knob)) != knob), knob)


def quality_vs_knob(entries: list[Entry], styles: dict[str, Style], knob: str, xlabel: str | None = None):
    """CIDEr against a decoding knob for the models that swept it; the others as dotted lines."""
    swept = {e.label: pts for e in entries if len(pts := _knob_points(e, knob)) > 1}
    if not swept:
        return None
    others = {e.label: v for e in entries if e.label not in swept and (v := _default_cider(e)) is not None}
    fig, (ax,) = column_figure(legend_items=len(swept) + len(others) + 2)
    for label, points in swept.items():
        model_line(ax, points, "x", "y", styles[label])
    for label, value in others.items():
        level_line(ax, value, styles[label])
    xs = [p["x"] for pts in swept.values() for p in pts]
    if value_spread(xs) > 8:
        log_ticks(ax, xs)
    else:
        integer_ticks(ax)
    ax.set(xlabel=xlabel or _knob_label(entries, knob), ylabel=CIDER)
    legend_below(fig, styles, [*swept, *others],
            [("swept", "-"), ("default decoding only", ":")] if others else [])
    return fig


def _networkless(entry: Entry) -> bool:
    """A reference that runs no network (its latency is a look-up, not decoding)."""
    evals = [run.latency["batch1"].get("network_evals") for run in entry.runs if run.latency]
    return bool(evals) and all(v == 0 for v in evals)


def _latency_points(entry: Entry) -> list[dict[str, Any]]:
    """(latency ms, CIDEr) per decoding setting with both measurements: each cost-knob value, else the
    default; seeds pooled per setting, then averaged."""
    from bench.phases.latency import LENGTH
    from bench.report.tables import sweep_value

    by_setting: dict[str, list[tuple[float, float]]] = {}
    for run in entry.runs:
        if not run.latency:
            continue
        decoding = run.latency.get("decoding", {})
        seen = set()
        for knob, rows in run.latency.get("sweeps", {}).items():
            if knob == LENGTH:
                continue
            quality = {str(r["value"]): r["corpus"]["CIDEr"] for r in run.sweep
                       if r.get("knob") == knob and "CIDEr" in r.get("corpus", {})}
            for row in rows:
                value = str(sweep_value(knob, row))
                if value in quality:
                    by_setting.setdefault(f"{knob}={value}", []).append((1000 * row["median_s"], 100 * quality[value]))
                    seen.add((knob, value))
        if not any((k, str(v)) in seen for k, v in decoding.items()) and run.corpus("CIDEr") is not None:
            by_setting.setdefault("default", []).append(
                (1000 * run.latency["batch1"]["median_s"], 100 * run.corpus("CIDEr")))
    return [{"x": sum(x for x, _ in v) / len(v), "y": sum(y for _, y in v) / len(v)}
            for _, v in sorted(by_setting.items())]


def quality_vs_latency(entries: list[Entry], styles: dict[str, Style]):
    """CIDEr against batch-1 latency, one point per decoding setting; references that run no network
    are dotted lines at their CIDEr (a look-up's microseconds would only stretch the axis)."""
    curves, references = {}, {}
    for e in entries:
        if _networkless(e):
            if (value := _default_cider(e)) is not None:
                references[e.label] = value
        elif points := _latency_points(e):
            curves[e.label] = points
    if not curves:
        return None
    fig, (ax,) = column_figure(legend_items=len(curves) + len(references) + 2)
    for label, points in curves.items():
        model_line(ax, points, "x", "y", styles[label])
    for label, value in references.items():
        level_line(ax, value, styles[label])
    xs = [p["x"] for pts in curves.values() for p in pts]
    if value_spread(xs) > 10:
        log_axis(ax.xaxis, ax.set_xscale, xs)
    ax.set(xlabel=LATENCY, ylabel=CIDER)
    legend_below(fig, styles, [*curves, *references],
            [("decoding settings", "-"), ("no network (reference)", ":")] if references else [])
    return fig


def latency_vs_length(entries: list[Entry], styles: dict[str, Style]):
    """Latency against a forced generated length (captioners with the forced_length probe); the others,
    which generate every length at once, are flat lines (LaDiC fig. 2a). References without a network
    are left out."""
    from bench.phases.latency import LENGTH
    from bench.report.tables import sweep_value

    curves, flat = {}, {}
    for e in entries:
        points = [{"x": float(sweep_value(LENGTH, row)), "y": 1000 * row["median_s"]}
                  for run in e.runs if run.latency for row in run.latency.get("sweeps", {}).get(LENGTH, [])]
        if points:
            curves[e.label] = points
        elif not _networkless(e):
            medians = [1000 * run.latency["batch1"]["median_s"] for run in e.runs if run.latency]
            if medians:
                flat[e.label] = sum(medians) / len(medians)
    if not curves:
        return None
    fig, (ax,) = column_figure(legend_items=len(curves) + len(flat) + 2)
    for label, points in curves.items():
        model_line(ax, points, "x", "y", styles[label])
    for label, value in flat.items():
        level_line(ax, value, styles[label])
    integer_ticks(ax)
    values = [p["y"] for pts in curves.values() for p in pts] + list(flat.values())
    if value_spread(values) > 30:
        log_axis(ax.yaxis, ax.set_yscale, values)
    ax.set(xlabel="generated length (tokens)", ylabel="latency (ms / image)")
    legend_below(fig, styles, [*curves, *flat],
            [("forced length", "-"), ("all lengths at once", ":")] if flat else [])
    return fig


def _diversity_points(entries: list[Entry]) -> dict[tuple[str, str], tuple[float, float, float]]:
    """(label, sampling method) -> (Self-CIDEr, mean-of-k CIDEr, best-of-k CIDEr), each the seeds' mean."""
    pooled: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for e in entries:
        for run in e.runs:
            for method, row in ((run.result.get("diversity") or {}).get("methods") or {}).items():
                pooled.setdefault((e.label, method), []).append(
                    (row["self_cider"], 100 * row["cider_mean_of_k"], 100 * row["cider_best_of_k"]))
    return {key: tuple(sum(r[i] for r in rows) / len(rows) for i in range(3))  # type: ignore[misc]
            for key, rows in pooled.items()}


def quality_vs_diversity(entries: list[Entry], styles: dict[str, Style]):
    """Quality of k sampled captions against their diversity: one point per model and sampling method
    (diffusion: noise seeds; autoregressive: nucleus, top-k beams), mean-of-k CIDEr filled, best-of-k
    (oracle) open on the same vertical, the method named beside it; a dotted line per method through
    its temperature sweep's mean-of-k points (the curve on which bench/report/diversity.py matches)."""
    from matplotlib.lines import Line2D

    points = _diversity_points(entries)
    if not points:
        return None
    labels = sorted({label for label, _ in points})
    fig, (ax,) = column_figure(legend_items=len(labels) + 2, panel_height=2.2)
    means = [mean for _, mean, _ in points.values()]
    y_span = (max(means) - min(means)) or 1.0
    placed: list[tuple[float, float]] = []
    for (label, method), (x, mean, best) in sorted(points.items(), key=lambda kv: (kv[1][0], kv[1][1])):
        st = styles[label]
        ax.plot([x, x], [mean, best], color=st.colour, linewidth=0.8, zorder=1)
        ax.plot([x], [mean], marker=st.marker, color=st.colour, markeredgewidth=0, linestyle="none", zorder=2)
        ax.plot([x], [best], marker=st.marker, markerfacecolor="white", markeredgecolor=st.colour,
                markeredgewidth=0.9, linestyle="none", zorder=2)
        # A label that would sit on a neighbour's goes one line lower for each neighbour it would hit.
        crowded = sum(abs(x - px) < 0.12 and abs(mean - py) < 0.08 * y_span for px, py in placed)
        ax.annotate(method, (x, mean), xytext=(3, -3 - 7 * crowded), textcoords="offset points",
                    fontsize=6, color=st.colour, va="top")
        placed.append((x, mean))
    for e in entries:  # each method's temperature curve (seed-0-style: the first run that swept)
        run = next((r for r in e.runs if (r.result.get("diversity") or {}).get("curves")), None)
        for curve in ((run.result["diversity"]["curves"] if run else {}) or {}).values():
            on = sorted((p for p in curve if p.get("temperature") is not None and p.get("top_p") == next(
                (q.get("top_p") for q in curve if q.get("default")), None)), key=lambda p: p["temperature"])
            if len(on) > 1:
                ax.plot([p["self_cider"] for p in on], [100 * p["cider_mean_of_k"] for p in on],
                        color=styles[e.label].colour, linewidth=0.8, linestyle=":", zorder=1)
    ax.set(xlabel="Self-CIDEr (diversity, 0 to 1)", ylabel="CIDEr (x100) of the k samples")
    ax.set_xlim(-0.05, 1.05)
    handles = [Line2D([], [], color=styles[m].colour, marker=styles[m].marker, markeredgewidth=0,
                      linestyle="none", label=m) for m in labels]
    handles += [Line2D([], [], color="0.3", marker="o", markeredgewidth=0, linestyle="none", label="mean of k"),
                Line2D([], [], color="0.3", marker="o", markerfacecolor="white", linestyle="none",
                       label="best of k")]
    fig.legend(handles=handles, loc="outside lower center", ncol=2, frameon=False, columnspacing=1.2)
    return fig


def pareto_fronts(entries: list[Entry], styles: dict[str, Style]):
    """Each learned model's Pareto front and the CIDEr targets of the latency rows (bench/report/cost.py)."""
    from bench.report.cost import pareto_fronts as draw

    return draw(entries, styles)


FIGURES: dict[str, Callable[..., Any]] = {
    "quality_vs_latency": quality_vs_latency,
    "latency_vs_length": latency_vs_length,
    "quality_by_length": quality_by_length,
    "exposure_gap": exposure_gap,
    "error_injection": error_injection,
    "quality_vs_diversity": quality_vs_diversity,
    "pareto_fronts": pareto_fronts,
}


def figure_drawers(entries: list[Entry]) -> dict[str, Callable[..., Any]]:
    """Every figure to draw: one `quality_vs_<knob>` per knob the eval phase swept (whatever knobs the
    captioners declare), then the fixed ones."""
    knobs = sorted({r["knob"] for e in entries for run in e.runs for r in run.sweep if "knob" in r})
    drawers: dict[str, Callable[..., Any]] = {
        f"quality_vs_{knob}": (lambda e, s, k=knob: quality_vs_knob(e, s, k)) for knob in knobs}
    return {**drawers, **FIGURES}


def make_figures(entries: list[Entry], styles: dict[str, Style], out_dir: Path, prefix: str = "") -> list[Path]:
    """Draw every figure that has data; returns the PNG and PDF paths written (PNG first)."""
    import matplotlib
    import seaborn as sns

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with sns.axes_style("whitegrid"), matplotlib.rc_context(RC):
        for name, draw in figure_drawers(entries).items():
            fig = draw(entries, styles)
            if fig is not None:
                written += save_figure(fig, out_dir / f"{prefix}{name}")
    return written
