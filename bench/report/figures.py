"""Figures for papers (seaborn on matplotlib): PNG (200 dpi) and PDF, single-column width.

Every model keeps one colour and one marker in every figure (labels sorted, then seaborn's colour-blind
palette in that order), so a reader can follow a model across figures, in greyscale too. A figure whose
data no model has is not written at all (no empty plots). Figures are built on `matplotlib.figure.Figure`
objects, never pyplot: no GUI backend is touched (it renders with Agg) and no global state leaks into
the caller. Saved files carry fixed metadata and no creation date, so the same results give the same
bytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report.data import Entry

WIDTH_IN = 3.3  # one column of a two-column paper
DPI = 200
MIN_COUNT = 5  # positions (or buckets) measured on fewer captions than this are noise, not a curve
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
RC = {"font.size": 8, "axes.labelsize": 8, "axes.titlesize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
      "legend.fontsize": 7, "legend.title_fontsize": 7, "lines.linewidth": 1.2, "lines.markersize": 4,
      "pdf.fonttype": 42, "svg.hashsalt": "bench-report", "axes.titleweight": "normal"}
METADATA = {"png": {"Software": "bench report"},
            "pdf": {"Creator": "bench report", "Producer": "bench report", "CreationDate": None}}
CIDER = "CIDEr (x100)"
LATENCY = "latency (ms / image, batch 1)"


@dataclass(frozen=True)
class Style:
    colour: str
    marker: str


#: seaborn 'colorblind' colours in the order they are handed out: its orange (1) and vermillion (3)
#: are hard to tell apart as thin lines, so they are kept as far apart in the order as can be.
PALETTE_ORDER = (0, 1, 2, 4, 5, 9, 7, 3, 6, 8)


def model_styles(labels: list[str]) -> dict[str, Style]:
    """A fixed colour and marker per model label: sorted labels in `PALETTE_ORDER` of 'colorblind'."""
    import seaborn as sns

    ordered = sorted(set(labels))
    base = sns.color_palette("colorblind", 10).as_hex()
    palette = [base[i] for i in PALETTE_ORDER]
    return {label: Style(palette[i % len(palette)], MARKERS[i % len(MARKERS)]) for i, label in enumerate(ordered)}


# ---------------------------------------------------------------- drawing helpers

def _frame(points: list[dict[str, Any]]):
    import pandas as pd

    return pd.DataFrame(points)


def _line(ax, points: list[dict[str, Any]], x: str, y: str, style: Style, dashes: bool = False) -> None:
    """One model's curve; several seeds at the same x are averaged (no band: the seeds are few)."""
    import seaborn as sns

    df = _frame(points)
    sns.lineplot(data=df, x=x, y=y, ax=ax, color=style.colour, marker=style.marker, estimator="mean",
                 errorbar=None, sort=True, linestyle="--" if dashes else "-", legend=False, markeredgewidth=0)


def _hline(ax, value: float, style: Style) -> None:
    ax.axhline(value, color=style.colour, linestyle=":", linewidth=1.2)


def _legend(fig, styles: dict[str, Style], shown: list[str], extra: list[tuple[str, str]] = ()) -> None:
    """Legend under the axes: models (colour + marker), then line-style keys (label, linestyle)."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=styles[m].colour, marker=styles[m].marker, markeredgewidth=0, label=m)
               for m in sorted(shown)]
    handles += [Line2D([], [], color="0.3", linestyle=ls, label=label) for label, ls in extra]
    ncol = 2 if len(handles) > 1 else 1
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, frameon=False, handlelength=2.2,
               columnspacing=1.2)


def _figure(rows: int = 1, legend_items: int = 1, panel_height: float = 1.9):
    from matplotlib.figure import Figure

    legend_height = 0.2 * ((legend_items + 1) // 2) + 0.1
    fig = Figure(figsize=(WIDTH_IN, panel_height * rows + legend_height + 0.35), layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    return fig, list(axes)


def _integer_ticks(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _log_ticks(ax, values: list[float]) -> None:
    """Log x axis with the measured values as plain-number ticks (steps 1..1000 span decades)."""
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(sorted(set(values))))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(ScalarFormatter())


def _log_axis(axis, set_scale, values: list[float]) -> None:
    """A log axis labelled with a few plain numbers (3, 10, 300), not powers of ten.

    Fewer labels the more decades the data span, so they never run into each other at column width.
    """
    import math

    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    positive = [v for v in values if v > 0]
    decades = math.log10(max(positive) / min(positive)) if positive else 0.0
    subs = (1.0, 2.0, 5.0) if decades < 1.2 else (1.0, 3.0) if decades < 2.5 else (1.0,)
    set_scale("log")
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _spread(values: list[float]) -> float:
    positive = [v for v in values if v > 0]
    return max(positive) / min(positive) if positive else 1.0


# ---------------------------------------------------------------- the figures

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
    fig, (ax,) = _figure(legend_items=len(swept) + len(others) + 2)
    for label, points in swept.items():
        _line(ax, points, "x", "y", styles[label])
    for label, value in others.items():
        _hline(ax, value, styles[label])
    xs = [p["x"] for pts in swept.values() for p in pts]
    if _spread(xs) > 8:
        _log_ticks(ax, xs)
    else:
        _integer_ticks(ax)
    ax.set(xlabel=xlabel or _knob_label(entries, knob), ylabel=CIDER)
    _legend(fig, styles, [*swept, *others],
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
    fig, (ax,) = _figure(legend_items=len(curves) + len(references) + 2)
    for label, points in curves.items():
        _line(ax, points, "x", "y", styles[label])
    for label, value in references.items():
        _hline(ax, value, styles[label])
    xs = [p["x"] for pts in curves.values() for p in pts]
    if _spread(xs) > 10:
        _log_axis(ax.xaxis, ax.set_xscale, xs)
    ax.set(xlabel=LATENCY, ylabel=CIDER)
    _legend(fig, styles, [*curves, *references],
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
    fig, (ax,) = _figure(legend_items=len(curves) + len(flat) + 2)
    for label, points in curves.items():
        _line(ax, points, "x", "y", styles[label])
    for label, value in flat.items():
        _hline(ax, value, styles[label])
    _integer_ticks(ax)
    values = [p["y"] for pts in curves.values() for p in pts] + list(flat.values())
    if _spread(values) > 30:
        _log_axis(ax.yaxis, ax.set_yscale, values)
    ax.set(xlabel="generated length (tokens)", ylabel="latency (ms / image)")
    _legend(fig, styles, [*curves, *flat],
            [("forced length", "-"), ("all lengths at once", ":")] if flat else [])
    return fig


def _band(ax, points: list[dict[str, Any]], x: str, low: str, high: str, style: Style) -> None:
    """A translucent interval band per run (each seed its own: intervals are not averaged)."""
    for run in sorted({p["run"] for p in points}):
        rows = sorted((p for p in points if p["run"] == run and p.get(low) is not None), key=lambda p: p[x])
        if len(rows) > 1:
            ax.fill_between([p[x] for p in rows], [p[low] for p in rows], [p[high] for p in rows],
                            color=style.colour, alpha=0.15, linewidth=0)


def quality_by_length(entries: list[Entry], styles: dict[str, Style]):
    """BLEU-4 and CIDEr per reference-length bucket with 95% bootstrap bands (LaDiC fig. 2b)."""
    curves = {}
    for e in entries:
        points = []
        for n, run in enumerate(e.runs):
            for r in (run.errprop or {}).get("quality_by_length", []):
                if r.get("images", 0) < MIN_COUNT:
                    continue
                point = {"run": n, "x": float(r["length"]), "bleu": 100 * r["BLEU-4"], "cider": 100 * r["CIDEr"]}
                for key, name in (("bleu", "BLEU-4"), ("cider", "CIDEr")):
                    if f"{name}_low" in r:
                        point[f"{key}_low"], point[f"{key}_high"] = 100 * r[f"{name}_low"], 100 * r[f"{name}_high"]
                points.append(point)
        if points:
            curves[e.label] = points
    if not curves:
        return None
    fig, axes = _figure(rows=2, legend_items=len(curves) + 1, panel_height=1.45)
    for label, points in curves.items():
        for ax, key in zip(axes, ("bleu", "cider"), strict=True):
            _band(ax, points, "x", f"{key}_low", f"{key}_high", styles[label])
            _line(ax, points, "x", key, styles[label])
    axes[0].set(ylabel="BLEU-4 (x100)", xlabel="", title="shaded: 95% bootstrap interval over images")
    axes[1].set(ylabel=CIDER, xlabel="mean reference length (words)")
    _integer_ticks(axes[1])
    _legend(fig, styles, list(curves))
    return fig


def exposure_gap(entries: list[Entry], styles: dict[str, Style]):
    """Word accuracy per position of the best-aligned reference (Levenshtein-aligned), free-running
    (every model) and teacher-forced (models with that probe)."""
    curves: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for e in entries:
        for mode in ("free_running", "teacher_forced"):
            points = [{"x": float(r["position"]), "y": 100 * r["accuracy"]}
                      for run in e.runs if run.errprop for r in run.errprop.get(mode, [])
                      if r.get("count", 0) >= MIN_COUNT]
            if points:
                curves.setdefault(e.label, {})[mode] = points
    if not any("teacher_forced" in modes for modes in curves.values()):
        return None  # without a teacher-forced curve there is no gap to show
    fig, (ax,) = _figure(legend_items=len(curves) + 2)
    for label, modes in curves.items():
        for mode, points in modes.items():
            _line(ax, points, "x", "y", styles[label], dashes=mode == "teacher_forced")
    _integer_ticks(ax)
    ax.set(xlabel="position in the best-aligned reference (word)", ylabel="word accuracy (%)")
    _legend(fig, styles, list(curves), [("free-running", "-"), ("teacher-forced", "--")])
    return fig


#: line style of each injection level (None: the word is forced when generation reaches it)
LEVEL_STYLES = {None: ("-", "when generated"), 0.2: (":", "at 20% (early)"), 0.5: ("-.", "at 50% (middle)"),
                0.8: ("--", "at 80% (late)")}
INJECTION_PANELS = (("changed_after", 1.0, "words changed\nafter k"), ("changed_before", 1.0, "words changed\nbefore k"),
                    ("survival", 100.0, "wrong word\nsurvives (%)"), ("cider_drop", 100.0, "CIDEr drop\n(x100)"))


def _injection_points(entry: Entry) -> dict[Any, list[dict[str, Any]]]:
    """Per injection level: points of the default probe setting (the first a run lists), all seeds."""
    by_level: dict[Any, list[dict[str, Any]]] = {}
    for run in entry.runs:
        errprop = run.errprop or {}
        settings = errprop.get("injection_setup", {}).get("settings") or ["default"]
        for r in errprop.get("injection", []):
            if r.get("setting", settings[0]) != settings[0] or r.get("images", 0) < MIN_COUNT or "survival" not in r:
                continue
            cider = r.get("quality", {}).get("CIDEr", {})
            by_level.setdefault(r.get("level"), []).append(
                {"x": float(r["position"]), "changed_after": r["changed_after"], "changed_before": r["changed_before"],
                 "survival": 100 * r["survival"], "cider_drop": 100 * cider["drop"] if cider else None,
                 "low": 100 * cider["low"] if cider else None, "high": 100 * cider["high"] if cider else None})
    return by_level


def error_injection(entries: list[Entry], styles: dict[str, Style]):
    """A wrong word injected at word k of the uninjected caption, every model on the same axes: words
    changed after and before k (Levenshtein-aligned), whether the wrong word survives, and the CIDEr
    drop (with 95% paired bootstrap intervals); each injection level its own line style."""
    curves = {e.label: pts for e in entries if (pts := _injection_points(e))}
    if not curves:
        return None
    levels = sorted({lv for pts in curves.values() for lv in pts}, key=lambda v: -1 if v is None else v)
    extra = [(LEVEL_STYLES.get(lv, ("-", f"at {lv}"))[1], LEVEL_STYLES.get(lv, ("-", ""))[0]) for lv in levels]
    fig, axes = _figure(rows=len(INJECTION_PANELS), legend_items=len(curves) + len(extra), panel_height=1.1)
    lines = [(label, level) for label, by_level in curves.items() for level in by_level]
    for label, by_level in curves.items():
        style = styles[label]
        for level, points in by_level.items():
            dash = LEVEL_STYLES.get(level, ("-", ""))[0]
            for ax, (key, _, _) in zip(axes, INJECTION_PANELS, strict=True):
                shown = [p for p in points if p[key] is not None]
                if shown:
                    _styled_line(ax, shown, key, style, dash)
            drops = [p for p in points if p["low"] is not None]
            if drops:  # side by side, so that the bars of different curves do not hide each other
                dodge = 0.06 * (lines.index((label, level)) - (len(lines) - 1) / 2)
                _intervals(axes[-1], drops, style, dodge)
    for ax, (_, _, ylabel) in zip(axes, INJECTION_PANELS, strict=True):
        ax.set(ylabel=ylabel, xlabel="")
    axes[2].set_ylim(-5, 105)
    axes[-1].axhline(0, color="0.5", linewidth=0.6)
    axes[-1].set_title("bars: 95% paired bootstrap intervals", fontsize=7)
    axes[-1].set(xlabel="injected word position k")
    _integer_ticks(axes[-1])
    _legend(fig, styles, list(curves), extra)
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
    fig, (ax,) = _figure(legend_items=len(labels) + 2, panel_height=2.2)
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


def _styled_line(ax, points: list[dict[str, Any]], y: str, style: Style, dash: str) -> None:
    import seaborn as sns

    sns.lineplot(data=_frame(points), x="x", y=y, ax=ax, color=style.colour, marker=style.marker, estimator="mean",
                 errorbar=None, sort=True, linestyle=dash, legend=False, markeredgewidth=0)


def _intervals(ax, points: list[dict[str, Any]], style: Style, dodge: float = 0.0) -> None:
    """Vertical 95% interval bars of one curve (seeds' bounds averaged per position)."""
    by_x: dict[float, list[dict[str, Any]]] = {}
    for p in points:
        by_x.setdefault(p["x"], []).append(p)
    for x, rows in by_x.items():
        low = sum(r["low"] for r in rows) / len(rows)
        high = sum(r["high"] for r in rows) / len(rows)
        ax.plot([x + dodge, x + dodge], [low, high], color=style.colour, linewidth=0.8, alpha=0.7)


def _save(fig, base: Path) -> list[Path]:
    """PNG and PDF, each written to a temp file then renamed (a reader never sees half a file)."""
    written = []
    for ext in ("png", "pdf"):
        path = base.with_name(f"{base.name}.{ext}")
        tmp = path.with_name(f".{path.name}.tmp")
        fig.savefig(tmp, format=ext, dpi=DPI, metadata=METADATA[ext])
        os.replace(tmp, path)
        written.append(path)
    return written


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
                written += _save(fig, out_dir / f"{prefix}{name}")
    return written
