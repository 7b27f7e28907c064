"""The error-propagation figures (bench/phases/errprop.py's probes): quality by reference length,
the exposure gap, and the error-injection panels."""

from __future__ import annotations

from typing import Any

from bench.report.data import Entry
from bench.report.plotting import (
    CIDER,
    MIN_COUNT,
    Style,
    column_figure,
    integer_ticks,
    interval_band,
    interval_bars,
    legend_below,
    model_line,
    styled_line,
)


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
    fig, axes = column_figure(rows=2, legend_items=len(curves) + 1, panel_height=1.45)
    for label, points in curves.items():
        for ax, key in zip(axes, ("bleu", "cider"), strict=True):
            interval_band(ax, points, "x", f"{key}_low", f"{key}_high", styles[label])
            model_line(ax, points, "x", key, styles[label])
    axes[0].set(ylabel="BLEU-4 (x100)", xlabel="", title="shaded: 95% bootstrap interval over images")
    axes[1].set(ylabel=CIDER, xlabel="mean reference length (words)")
    integer_ticks(axes[1])
    legend_below(fig, styles, list(curves))
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
    fig, (ax,) = column_figure(legend_items=len(curves) + 2)
    for label, modes in curves.items():
        for mode, points in modes.items():
            model_line(ax, points, "x", "y", styles[label], dashes=mode == "teacher_forced")
    integer_ticks(ax)
    ax.set(xlabel="position in the best-aligned reference (word)", ylabel="word accuracy (%)")
    legend_below(fig, styles, list(curves), [("free-running", "-"), ("teacher-forced", "--")])
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
    fig, axes = column_figure(rows=len(INJECTION_PANELS), legend_items=len(curves) + len(extra), panel_height=1.1)
    lines = [(label, level) for label, by_level in curves.items() for level in by_level]
    for label, by_level in curves.items():
        style = styles[label]
        for level, points in by_level.items():
            dash = LEVEL_STYLES.get(level, ("-", ""))[0]
            for ax, (key, _, _) in zip(axes, INJECTION_PANELS, strict=True):
                shown = [p for p in points if p[key] is not None]
                if shown:
                    styled_line(ax, shown, key, style, dash)
            drops = [p for p in points if p["low"] is not None]
            if drops:  # side by side, so that the bars of different curves do not hide each other
                dodge = 0.06 * (lines.index((label, level)) - (len(lines) - 1) / 2)
                interval_bars(axes[-1], drops, style, dodge)
    for ax, (_, _, ylabel) in zip(axes, INJECTION_PANELS, strict=True):
        ax.set(ylabel=ylabel, xlabel="")
    axes[2].set_ylim(-5, 105)
    axes[-1].axhline(0, color="0.5", linewidth=0.6)
    axes[-1].set_title("bars: 95% paired bootstrap intervals", fontsize=7)
    axes[-1].set(xlabel="injected word position k")
    integer_ticks(axes[-1])
    legend_below(fig, styles, list(curves), extra)
    return fig
