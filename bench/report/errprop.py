"""The error-propagation table: one row per model, probe setting and injection level, the same columns
for every paradigm (bench/metrics/errprop.py defines them); a quantity a model lacks is a dash with
the reason in the notes, never another quantity in its place.
"""

from __future__ import annotations

from typing import Any

from bench.report.data import Entry

COLUMNS = ("model", "setting", "level", "injections", "changed before k", "changed after k", "survival (%)",
           "control changed", "CIDEr drop (x100)", "BLEU-4 drop (x100)", "repetition (raw, %)")
NOTE = ("Words changed: Levenshtein-aligned edits between the uninjected and the injected caption outside "
        "position k, mean per injection; survival: share of injections whose wrong word is in the final "
        "caption; control: the original word through the same path (the probe's own noise floor). Drops: "
        "corpus score of the uninjected minus the injected captions on the same images, 95% paired bootstrap "
        "interval over injections (image, wrong word); with several seeds, means of the seeds' values and "
        "bounds. Level: fraction of generation done when the word is put in ('when generated': forced as "
        "generation reaches it). Repetition: share of words equal to the one before, on raw output.")


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _drop(rows: list[dict[str, Any]], metric: str) -> str:
    parts = [r["quality"][metric] for r in rows if metric in r.get("quality", {})]
    if not parts:
        return "-"
    point, low, high = (100 * _mean([p[k] for p in parts]) for k in ("drop", "low", "high"))  # type: ignore[operator]
    return f"{point:.1f} [{low:.1f}, {high:.1f}]"


def errprop_rows(entries: list[Entry]) -> tuple[list[list[str]], list[str]]:
    """Table rows (strings) and notes on what some models lack."""
    rows, notes = [], []
    for e in entries:
        reports = [r.errprop for r in e.runs if r.errprop]
        if not reports:
            continue
        repetition = _mean([r["repetition_rate"] for r in reports if "repetition_rate" in r])
        rep = "-" if repetition is None else f"{100 * repetition:.1f}"
        groups: dict[tuple[str, Any], list[dict[str, Any]]] = {}
        for report in reports:
            for row in report.get("injection_summary", []):
                if row.get("injections"):
                    groups.setdefault((row["setting"], row["level"]), []).append(row)
        if not groups:
            reason = next((r["unavailable"].get("injection") for r in reports if r.get("unavailable", {}).get("injection")),
                          "not measured")
            rows.append([e.label, "-", "-", "-", "-", "-", "-", "-", "-", "-", rep])
            notes.append(f"{e.label}: no injection ({reason}).")
            continue
        for (setting, level), group in groups.items():
            def mean(key: str, scale: float = 1.0, digits: int = 2, rows_=group) -> str:
                return f"{scale * _mean([r[key] for r in rows_]):.{digits}f}"  # type: ignore[operator]

            control = _mean([r["control_changed_before"] + r["control_changed_after"] for r in group])
            rows.append([e.label, setting, "when generated" if level is None else f"{level:g}",
                         str(sum(r["injections"] for r in group)), mean("changed_before"), mean("changed_after"),
                         mean("survival", 100.0, 1), f"{control:.2f}", _drop(group, "CIDEr"), _drop(group, "BLEU-4"), rep])
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
    return "\n".join([r"\begin{table*}[t]", r"\centering", r"\small", r"\begin{tabular}{lll" + "r" * 8 + "}",
                      r"\toprule", " & ".join(esc(c) for c in COLUMNS) + r" \\", r"\midrule", *body, r"\bottomrule",
                      r"\end{tabular}", rf"\caption{{{esc(caption)} {esc(NOTE)} {esc(' '.join(notes))}}}",
                      rf"\label{{{label}}}", r"\end{table*}"]) + "\n"
