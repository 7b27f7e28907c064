"""The error-propagation table: one row per model, probe setting and injection level, the same columns
for every paradigm (bench/metrics/errprop.py defines them); a quantity a model lacks is a dash with
the reason in the notes, never another quantity in its place.

Every number is net of the right-word control; quality columns come with the model-free substitution
drop beside them, and "propagation" is the drop beyond the substituted word (docstring c of
bench/metrics/errprop.py). Seeds are combined as for quality: the mean of the seeds' values, and an
interval from the two-level bootstrap (each resample draws seeds with replacement and, for every seed,
the same multiset of images, as the errprop phase records its resamples with a shared image draw).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.report.data import Entry

COLUMNS = ("model", "seeds", "setting", "level", "slots covered", "injections", "changed before k",
           "changed after k", "survival (%)", "changed if survived", "control changed", "CIDEr drop (x100)",
           "substitution drop (x100)", "CIDEr propagation (x100)", "BLEU-4 propagation (x100)",
           "repetition (raw, %)")
NOTE = ("A slot is a role word of an image's references (a colour or a shape on shapes, a noun elsewhere); "
        "its wrong words, of the same role and absent from the image's references, are the same for every "
        "model. Words changed: Levenshtein-aligned edits between the uninjected and the injected caption "
        "before / after position k, mean per injection, less the right-word control's (the same path with "
        "the right word; its raw changes are the 'control changed' column and should be 0). Survival: share "
        "of injections whose wrong word is in the final caption; 'fixed' where it cannot be removed by "
        "construction (a forced prefix). Changed if survived: words changed among injections whose wrong "
        "word survived, net of control. Drop: corpus score of the uninjected minus the injected captions; "
        "substitution drop: the same for the uninjected caption with only that word replaced (no model); "
        "propagation = drop - substitution drop - control drop, what the continuation loses beyond the "
        "word itself. 95% percentile intervals from resampling images (two-level with seeds). Level: "
        "fraction of generation done when the word is put in ('when generated': forced as generation "
        "reaches it). Repetition: share of words equal to the one before, on raw output, per model.")
CONFIDENCE = 0.95


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def combine(parts: list[dict[str, Any]], seed: int = 0) -> tuple[float, float, float]:
    """(point, low, high) of one quantity over seeds: the mean of the seeds' values; the interval from
    the seeds' recorded resamples, resample r of every seed drawing the same images (with one seed, its
    own interval). Each resample draws the seeds with replacement and averages them."""
    point = float(np.mean([p["value"] for p in parts]))
    if len(parts) == 1:
        return point, float(parts[0]["low"]), float(parts[0]["high"])
    if any(not p.get("samples") for p in parts):
        return point, float("nan"), float("nan")  # no resamples recorded: no combined interval
    width = min(len(p["samples"]) for p in parts)
    samples = np.array([[np.nan if v is None else v for v in p["samples"][:width]] for p in parts])  # (S, R)
    rng = np.random.default_rng([seed, 1])
    picks = rng.integers(0, len(parts), size=(width, len(parts)))
    combined = samples[picks, np.arange(width)[:, None]].mean(axis=1)
    low, high = np.nanquantile(combined, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return point, float(low), float(high)


def _interval(parts: list[dict[str, Any]], scale: float = 100.0) -> str:
    if not parts:
        return "-"
    point, low, high = combine(parts)
    if np.isnan(low):
        return f"{scale * point:.1f}"
    return f"{scale * point:.1f} [{scale * low:.1f}, {scale * high:.1f}]"


def level_label(level: Any) -> str:
    if level is None:
        return "when generated"
    return f"{level:g}" if isinstance(level, int | float) else str(level)


def _seeds(entry: Entry) -> str:
    return " ".join(str(r.result.get("seed", 0)) for r in entry.runs if r.errprop)


def _row(label: str, seeds: str, setting: str, level: Any, group: list[dict[str, Any]], rep: str) -> list[str]:
    def mean(key: str, scale: float = 1.0, digits: int = 2) -> str:
        value = _mean([r.get(key) for r in group])
        return "-" if value is None else f"{scale * value:.{digits}f}"

    def quality(metric: str, key: str) -> str:
        return _interval([r["quality"][metric][key] for r in group if metric in r.get("quality", {})])

    survival = "fixed" if all(r.get("survival_fixed") for r in group) else mean("survival", 100.0, 1)
    control = _mean([r["control_changed_before"] + r["control_changed_after"] for r in group])
    covered = f"{sum(r['slots_covered'] for r in group)}/{sum(r['slots'] for r in group)}"
    return [label, seeds, setting, level_label(level), covered, str(sum(r["injections"] for r in group)),
            mean("net_changed_before"), mean("net_changed_after"), survival, mean("changed_given_survived"),
            f"{control:.2f}", quality("CIDEr", "drop"), quality("CIDEr", "substitution_drop"),
            quality("CIDEr", "propagation"), quality("BLEU-4", "propagation"), rep]


def errprop_rows(entries: list[Entry]) -> tuple[list[list[str]], list[str]]:
    """Table rows (strings) and notes on what some models lack."""
    rows, notes = [], []
    for e in entries:
        reports = [r.errprop for r in e.runs if r.errprop]
        if not reports:
            continue
        repetition = _mean([r.get("repetition_rate") for r in reports])
        rep = "-" if repetition is None else f"{100 * repetition:.1f}"
        groups: dict[tuple[str, Any], list[dict[str, Any]]] = {}
        for report in reports:
            for row in report.get("injection_summary", []):
                if row.get("injections") and "slots_covered" in row:
                    groups.setdefault((row["setting"], row["level"]), []).append(row)
        if not groups:
            older = any(row.get("injections") for r in reports for row in r.get("injection_summary", []))
            reason = ("errprop.json is from an earlier errprop phase without role slots and controls: rerun it"
                      if older else next((r["unavailable"].get("injection") for r in reports
                                          if r.get("unavailable", {}).get("injection")), "not measured"))
            rows.append([e.label, _seeds(e), *["-"] * (len(COLUMNS) - 3), rep])
            notes.append(f"{e.label}: no injection ({reason}).")
            continue
        for (setting, level), group in groups.items():
            rows.append(_row(e.label, _seeds(e), setting, level, group, rep))
    return rows, notes


def errprop_markdown(entries: list[Entry]) -> str | None:
    rows, notes = errprop_rows(entries)
    if not rows:
        return None
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join([*lines, "", NOTE, *notes]) + "\n"


def errprop_csv(entries: list[Entry]) -> str | None:
    import csv
    import io

    rows, _ = errprop_rows(entries)
    if not rows:
        return None
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    return buffer.getvalue()


def errprop_latex(entries: list[Entry], caption: str, label: str) -> str | None:
    rows, notes = errprop_rows(entries)
    if not rows:
        return None

    def esc(text: str) -> str:
        return text.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")

    body = [" & ".join(esc(c) for c in r) + r" \\" for r in rows]
    return "\n".join([r"\begin{table*}[t]", r"\centering", r"\small", r"\begin{tabular}{llll" + "r" * (len(COLUMNS) - 4) + "}",
                      r"\toprule", " & ".join(esc(c) for c in COLUMNS) + r" \\", r"\midrule", *body, r"\bottomrule",
                      r"\end{tabular}", rf"\caption{{{esc(caption)} {esc(NOTE)} {esc(' '.join(notes))}}}",
                      rf"\label{{{label}}}", r"\end{table*}"]) + "\n"
