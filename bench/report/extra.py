"""The report's table of the per-image metrics beyond the main table (CLIPScore, RefCLIPScore, CHAIR),
each headed with its declared direction (bench/metrics/catalog.py), the best value bold by that
direction; and the note on caption files that left images uncaptioned (`bench score`)."""

from __future__ import annotations

from bench.metrics.catalog import EXTRA_METRICS, higher_is_better
from bench.report.data import Entry


def heading(metric: str) -> str:
    """A column heading that says which way is better."""
    return f"{metric} ({'higher' if higher_is_better(metric) else 'lower'} is better)"


def extra_markdown(entries: list[Entry]) -> str:
    """Markdown table of the extra metrics any entry measured (x100, intervals in brackets), or ""."""
    metrics = [m for m in EXTRA_METRICS if any(e.metric(m) is not None for e in entries)]
    if not metrics:
        return ""
    best = {}
    for m in metrics:
        shown = [round(100 * v[0], 1) for v in (e.metric(m) for e in entries) if v is not None]
        best[m] = (max if higher_is_better(m) else min)(shown)
    lines = ["| model | paradigm | " + " | ".join(heading(m) for m in metrics) + " |",
             "|" + "---|" * (2 + len(metrics))]
    for e in entries:
        cells = []
        for m in metrics:
            value = e.metric(m)
            if value is None:
                cells.append("—")
                continue
            point, low, high = value
            text = f"{100 * point:.1f}" + (f" [{100 * low:.1f}, {100 * high:.1f}]" if low is not None else "")
            cells.append(f"**{text}**" if round(100 * point, 1) == best[m] else text)
        lines.append(f"| {e.label} | {e.paradigm} | " + " | ".join(cells) + " |")
    unavailable = sorted({f"{m}: {e.unavailable(m)}" for e in entries for m in EXTRA_METRICS
                          if e.metric(m) is None and e.unavailable(m)})
    notes = ["Metrics x100; bold: best by the metric's direction."]
    notes += [f"Not measured: {u.splitlines()[0]}" for u in unavailable[:4]]
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def uncaptioned_note(entries: list[Entry]) -> str | None:
    """Which scored caption files left images of the split uncaptioned, and what the comparisons used."""
    parts = []
    for e in entries:
        counts = sorted({len((r.scores or {}).get("images_uncaptioned", [])) for r in e.runs})
        if any(counts):
            scored = sorted({int((r.scores or {}).get("images_scored", 0)) for r in e.runs})
            parts.append(f"{e.label} (caption files without {'/'.join(map(str, counts))} image(s); "
                         f"{'/'.join(map(str, scored))} scored)")
    if not parts:
        return None
    return ("Caption files scored with `bench score` that miss images: " + ", ".join(parts)
            + ". Each paired comparison and seeds row uses only the images every compared row captioned.")
