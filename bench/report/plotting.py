"""Shared drawing for the report's figures: sizes, fonts, one style per model, and the helpers every
figure module draws with (bench/report/figures.py, figures_errprop.py, cost.py).

Figures are built on `matplotlib.figure.Figure` objects, never pyplot (no GUI backend, no global state);
saved files carry fixed metadata and no creation date, so the same results give the same bytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def frame(points: list[dict[str, Any]]):
    """The points as a pandas DataFrame (what seaborn draws from)."""
    import pandas as pd

    return pd.DataFrame(points)


def model_line(ax, points: list[dict[str, Any]], x: str, y: str, style: Style, dashes: bool = False) -> None:
    """One model's curve; several seeds at the same x are averaged (no band: the seeds are few)."""
    import seaborn as sns

    df = frame(points)
    sns.lineplot(data=df, x=x, y=y, ax=ax, color=style.colour, marker=style.marker, estimator="mean",
                 errorbar=None, sort=True, linestyle="--" if dashes else "-", legend=False, markeredgewidth=0)


def level_line(ax, value: float, style: Style) -> None:
    """A model measured at one setting only: a dotted horizontal line at its value."""
    ax.axhline(value, color=style.colour, linestyle=":", linewidth=1.2)


def legend_below(fig, styles: dict[str, Style], shown: list[str], extra: list[tuple[str, str]] = ()) -> None:
    """Legend under the axes: models (colour + marker), then line-style keys (label, linestyle)."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=styles[m].colour, marker=styles[m].marker, markeredgewidth=0, label=m)
               for m in sorted(shown)]
    handles += [Line2D([], [], color="0.3", linestyle=ls, label=label) for label, ls in extra]
    ncol = 2 if len(handles) > 1 else 1
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, frameon=False, handlelength=2.2,
               columnspacing=1.2)


def column_figure(rows: int = 1, legend_items: int = 1, panel_height: float = 1.9):
    """A one-column figure of `rows` panels sharing x, with room below for a legend of `legend_items`."""
    from matplotlib.figure import Figure

    legend_height = 0.2 * ((legend_items + 1) // 2) + 0.1
    fig = Figure(figsize=(WIDTH_IN, panel_height * rows + legend_height + 0.35), layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    return fig, list(axes)


def integer_ticks(ax) -> None:
    """Whole-number ticks on the x axis (positions, counts)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def log_ticks(ax, values: list[float]) -> None:
    """Log x axis with the measured values as plain-number ticks (steps 1..1000 span decades)."""
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(sorted(set(values))))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(ScalarFormatter())


def log_axis(axis, set_scale, values: list[float]) -> None:
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


def value_spread(values: list[float]) -> float:
    """max / min of the positive values (1 when none): whether an axis wants a log scale."""
    positive = [v for v in values if v > 0]
    return max(positive) / min(positive) if positive else 1.0


def interval_band(ax, points: list[dict[str, Any]], x: str, low: str, high: str, style: Style) -> None:
    """A translucent interval band per run (each seed its own: intervals are not averaged)."""
    for run in sorted({p["run"] for p in points}):
        rows = sorted((p for p in points if p["run"] == run and p.get(low) is not None), key=lambda p: p[x])
        if len(rows) > 1:
            ax.fill_between([p[x] for p in rows], [p[low] for p in rows], [p[high] for p in rows],
                            color=style.colour, alpha=0.15, linewidth=0)


def styled_line(ax, points: list[dict[str, Any]], y: str, style: Style, dash: str) -> None:
    """One model's curve of `y` against "x" in a given line style (seeds averaged per x)."""
    import seaborn as sns

    sns.lineplot(data=frame(points), x="x", y=y, ax=ax, color=style.colour, marker=style.marker, estimator="mean",
                 errorbar=None, sort=True, linestyle=dash, legend=False, markeredgewidth=0)


def interval_bars(ax, points: list[dict[str, Any]], style: Style, dodge: float = 0.0) -> None:
    """Vertical 95% interval bars of one curve (seeds' bounds averaged per position)."""
    by_x: dict[float, list[dict[str, Any]]] = {}
    for p in points:
        by_x.setdefault(p["x"], []).append(p)
    for x, rows in by_x.items():
        low = sum(r["low"] for r in rows) / len(rows)
        high = sum(r["high"] for r in rows) / len(rows)
        ax.plot([x + dodge, x + dodge], [low, high], color=style.colour, linewidth=0.8, alpha=0.7)


def save_figure(fig, base: Path) -> list[Path]:
    """PNG and PDF, each written to a temp file then renamed (a reader never sees half a file)."""
    written = []
    for ext in ("png", "pdf"):
        path = base.with_name(f"{base.name}.{ext}")
        tmp = path.with_name(f".{path.name}.tmp")
        fig.savefig(tmp, format=ext, dpi=DPI, metadata=METADATA[ext])
        os.replace(tmp, path)
        written.append(path)
    return written
