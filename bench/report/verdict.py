"""The verdict table: per axis, which paradigm is ahead, by how much, with interval and p-value.

Paradigms are the labels the models declare; the two sides of each row are the best learned model of
each paradigm on that axis (a paper compares the best of each family). Axes:

- each quality metric: the paired two-level bootstrap test of the two best models from the suite's
  comparisons.json (bench/compare.py): difference A - B (x100) with its 95% interval and the
  Holm-adjusted p-value; "no significant difference" where p > alpha.
- latency at equal quality: the batch-1 latency each model needs to reach a common CIDEr, the highest
  CIDEr that every compared model reaches somewhere on its steps / beams sweep (or at its default
  decoding when it swept nothing); the lowest latency among a model's settings that reach it, mean over
  seeds. Reported as the ratio A / B; timings are not resampled, so there is no interval or p-value.
- diversity (when the models sampled): per pair of learned models of different paradigms, Div-1,
  Div-2, mBLEU-4 and Self-CIDEr at matched mean-of-k CIDEr (the middle of the range both curves
  reach, bench/report/diversity.py), A - B with an unadjusted interval over images.
- error propagation: per learned model and injection level (default probe setting), the CIDEr lost
  beyond the substituted word with the right-word control subtracted (bench/report/errprop.py), with
  its interval over images and seeds; no best model is picked, and an interval containing 0 is
  reported as no evidence. The repetition rate of every model (raw output), descriptive.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from bench.report.data import METRICS, Entry

ALPHA = 0.05
ERRPROP_AXIS = "error propagation: CIDEr lost beyond the substituted word (x100, control subtracted)"
NO_TEST = "not tested"
DIVERSITY_NAMES = {"div1": "Div-1 (higher: more diverse)", "div2": "Div-2 (higher: more diverse)",
                   "mbleu4": "mBLEU-4 (lower: more diverse)", "self_cider": "Self-CIDEr (higher: more diverse)"}


@dataclass
class VerdictRow:
    axis: str
    a: str  # "paradigm: model"
    b: str
    difference: str  # A - B (or A / B), printed
    interval: str
    p: str
    verdict: str


def _learned(entries: list[Entry]) -> dict[str, list[Entry]]:
    """Learned entries by declared paradigm, in suite order (the first paradigm is side A)."""
    from bench.compare import declared_trainable  # the rule the comparisons use

    groups: dict[str, list[Entry]] = {}
    for e in sorted(entries, key=lambda e: e.order):
        if declared_trainable(e.model, e.runs[0].result):
            groups.setdefault(e.paradigm, []).append(e)
    return groups


def _side(paradigm: str, label: str) -> str:
    return f"{paradigm}: {label}"


def _p(p: float) -> str:
    return f"{p:.3g}" if p >= 0.001 else f"{p:.1e}"


def _axis(metric: str) -> str:
    if metric.startswith("diversity "):
        return f"diversity: {DIVERSITY_NAMES.get(metric.removeprefix('diversity '), metric)}"
    return metric


def quality_rows(tests: list[dict[str, Any]], groups: dict[str, list[Entry]], task: str) -> list[VerdictRow]:
    """Tested axes (quality metrics, then diversity) from comparisons.json's paradigm tests."""
    rows = []
    paradigms = list(groups)
    mine = [t for t in tests if t.get("task") == task and t.get("kind") == "paradigm"
            and not t["metric"].startswith("diversity ")]  # diversity: at matched quality (diversity_rows)
    metrics = [m for m in METRICS if any(t["metric"] == m for t in mine)]
    metrics += [m for m in dict.fromkeys(t["metric"] for t in mine) if m not in metrics]
    for metric in metrics:
        for n, pa in enumerate(paradigms):
            for pb in paradigms[n + 1:]:
                found = [t for t in mine if t["metric"] == metric and t["paradigm_a"] == pa and t["paradigm_b"] == pb]
                if not found:
                    continue
                sign = 1 if found[0].get("higher_is_better", True) else -1
                best_a = max(found, key=lambda t: sign * t["score_a"])["model_a"]
                best_b = max(found, key=lambda t: sign * t["score_b"])["model_b"]
                t = next(t for t in found if t["model_a"] == best_a and t["model_b"] == best_b)
                word = " more diverse" if metric.startswith("diversity ") else " ahead"
                verdict = ((pa if sign * t["delta"] > 0 else pb) + word if t["p_holm"] <= ALPHA
                           else "no significant difference")
                scale, digits = (1, 3) if metric.startswith("diversity ") else (100, 1)
                rows.append(VerdictRow(_axis(metric), _side(pa, best_a), _side(pb, best_b),
                                       f"{scale * t['delta']:+.{digits}f}",
                                       f"[{scale * t['low']:+.{digits}f}, {scale * t['high']:+.{digits}f}]",
                                       _p(t["p_holm"]), verdict))
    return rows


def _curve(e: Entry) -> list[tuple[float, float]]:
    """(CIDEr, batch-1 latency s) per decoding setting: CIDEr the mean over every seed, latency the mean
    over the seeds that timed it (latency does not depend on the seed; a suite may time one seed only)."""
    cider: dict[tuple[str, str], list[float]] = {}
    seconds: dict[tuple[str, str], list[float]] = {}
    for run in e.runs:
        lat = run.latency or {}
        for row in run.sweep:
            if "CIDEr" in row.get("corpus", {}):
                cider.setdefault((row["knob"], str(row["value"])), []).append(row["corpus"]["CIDEr"])
        for knob, timed in lat.get("sweeps", {}).items():
            for s in timed:
                seconds.setdefault((knob, str(s.get("setting", {}).get(knob))), []).append(s["median_s"])
        if run.corpus("CIDEr") is not None:
            cider.setdefault(("default", ""), []).append(run.corpus("CIDEr"))
        if "batch1" in lat:
            seconds.setdefault(("default", ""), []).append(lat["batch1"]["median_s"])
    return [(statistics.fmean(c), statistics.fmean(seconds[key])) for key, c in cider.items()
            if len(c) == len(e.runs) and key in seconds]


def latency_row(groups: dict[str, list[Entry]]) -> list[VerdictRow]:
    curves = {e.label: _curve(e) for g in groups.values() for e in g}
    curves = {k: v for k, v in curves.items() if v}
    paradigms = [p for p in groups if any(e.label in curves for e in groups[p])]
    if len(paradigms) < 2:
        return []
    level = min(max(c for c, _ in v) for v in curves.values())  # every model reaches it somewhere

    def fastest(p: str) -> tuple[float, str]:
        return min((min(t for c, t in curves[e.label] if c >= level), e.label) for e in groups[p] if e.label in curves)

    rows = []
    for n, pa in enumerate(paradigms):
        for pb in paradigms[n + 1:]:
            (ta, la), (tb, lb) = fastest(pa), fastest(pb)
            rows.append(VerdictRow(f"latency at CIDEr >= {100 * level:.1f} (batch 1)",
                                   _side(pa, f"{la} {1000 * ta:.1f} ms"), _side(pb, f"{lb} {1000 * tb:.1f} ms"),
                                   f"x{ta / tb:.2f}", "–", "–",
                                   f"{NO_TEST} (timings; {pa if ta < tb else pb} faster)"))
    return rows


def diversity_rows(groups: dict[str, list[Entry]]) -> list[VerdictRow]:
    """Per pair of learned models of different paradigms and per measure: the measure at the middle of
    the mean-of-k CIDEr range both models' curves reach (bench/report/diversity.py), A - B with its
    interval over images (unadjusted, not part of the Holm family); a pair without a common range says so."""
    from bench.report.diversity import MORE_DIVERSE_HIGHER, matched

    paradigm = {e.label: p for p, g in groups.items() for e in g}
    rows = []
    for r in matched([e for g in groups.values() for e in g]):
        pa, pb = paradigm[r["a"].label], paradigm[r["b"].label]
        if pa == pb:
            continue
        axis = f"diversity at matched mean-of-k CIDEr: {DIVERSITY_NAMES[r['measure']]}"
        if not r["reachable"]:
            rows.append(VerdictRow(axis, _side(pa, r["a"].label), _side(pb, r["b"].label), "–", "–", "–",
                                   f"{NO_TEST}: no common quality (CIDEr x100: A {100 * r['range_a'][0]:.1f}-"
                                   f"{100 * r['range_a'][1]:.1f}, B {100 * r['range_b'][0]:.1f}-{100 * r['range_b'][1]:.1f})"))
            continue
        t = r["targets"][len(r["targets"]) // 2]
        if t["low"] > 0 or t["high"] < 0:
            ahead = pa if (t["delta"] > 0) == MORE_DIVERSE_HIGHER[r["measure"]] else pb
            verdict = f"{ahead} more diverse (unadjusted interval)"
        else:
            verdict = "no difference shown (interval contains 0)"
        sa, sb = r["seeds"]  # the seed whose diversity phase ran (a suite may run it on one seed only)
        rows.append(VerdictRow(f"{axis} {100 * t['quality']:.1f}", _side(pa, f"{r['a'].label} {t['a']:.3f} (seed {sa})"),
                               _side(pb, f"{r['b'].label} {t['b']:.3f} (seed {sb})"), f"{t['delta']:+.3f}",
                               f"[{t['low']:+.3f}, {t['high']:+.3f}]", "–", verdict))
    return rows


def errprop_rows(groups: dict[str, list[Entry]]) -> list[VerdictRow]:
    """Per learned model and injection level (default probe setting): the CIDEr its continuation loses
    beyond the substituted word, control subtracted, with the image (and seed) interval. No best model
    is picked: each stands alone, and an interval containing 0 is no evidence either way. Then the
    repetition rate of every model on one row per pair of paradigms."""
    from bench.report.errprop import combine, level_label

    rows = []
    for paradigm, entries in groups.items():
        for e in entries:
            by_level: dict[Any, list[dict[str, Any]]] = {}
            seeds = " ".join(str(run.result.get("seed", 0)) for run in e.runs if run.errprop)
            for run in e.runs:
                for row in (run.errprop or {}).get("injection_summary", []):
                    if row.get("setting") == "default" and "slots_covered" in row and "quality" in row:
                        by_level.setdefault(row["level"], []).append(row["quality"]["CIDEr"]["propagation"])
            for level, parts in by_level.items():
                point, low, high = combine(parts)
                verdict = ("no evidence either way (interval contains 0)" if not low > 0 and not high < 0 else
                           "propagates: loses more than the substituted word" if low > 0 else
                           "repairs: loses less than the substituted word")
                interval = "–" if low != low else f"[{100 * low:+.1f}, {100 * high:+.1f}]"
                rows.append(VerdictRow(ERRPROP_AXIS, _side(paradigm, f"{e.label} ({level_label(level)}; seeds {seeds})"), "–",
                                       f"{100 * point:+.1f}", interval, "–", f"{NO_TEST}: {verdict}"))
    rates = {p: [f"{e.label} {100 * v:.1f}%" for e in g if (v := _repetition(e)) is not None] for p, g in groups.items()}
    present = [p for p in groups if rates[p]]
    for n, pa in enumerate(present):
        for pb in present[n + 1:]:
            rows.append(VerdictRow("repetition rate (raw output), every model", _side(pa, ", ".join(rates[pa])),
                                   _side(pb, ", ".join(rates[pb])), "–", "–", "–", f"{NO_TEST} (descriptive)"))
    return rows


def _repetition(e: Entry) -> float | None:
    values = [run.errprop["repetition_rate"] for run in e.runs if (run.errprop or {}).get("repetition_rate") is not None]
    return statistics.fmean(values) if values else None


def verdict_rows(entries: list[Entry], comparisons: dict[str, Any] | None, task: str) -> list[VerdictRow]:
    """Every axis of one task, in the order quality, diversity, latency, error propagation."""
    groups = _learned([e for e in entries if e.task == task])
    if len(groups) < 2:
        return []
    rows = quality_rows((comparisons or {}).get("tests", []), groups, task)
    rows += diversity_rows(groups)
    rows += latency_row(groups)
    rows += errprop_rows(groups)
    return rows


def verdict_note(comparisons: dict[str, Any] | None) -> str:
    method = (comparisons or {}).get("method", "no comparisons recorded")
    n = (comparisons or {}).get("n_resamples")
    return (f"Each side: the best learned model of that paradigm on the axis. Quality: A - B x100, 95% interval "
            f"and p from the {method}" + (f" ({n} resamples)" if n else "") + f"; significant at {ALPHA}. Latency "
            "at equal quality: lowest batch-1 latency reaching the highest CIDEr every model reaches on its "
            "sweep. Diversity: A - B at the same mean-of-k CIDEr (x100, in the axis) on each model's temperature curve, unadjusted 95% interval over images. Error propagation: each model and level on its own (default probe setting), drop beyond the substituted word net of the right-word control, 95% interval over images and seeds; descriptive.")


# ---------------------------------------------------------------- renderers

HEADER = ["axis", "A", "B", "A - B", "95% interval", "p (Holm)", "verdict"]


def _cells(r: VerdictRow) -> list[str]:
    return [r.axis, r.a, r.b, r.difference, r.interval, r.p, r.verdict]


def verdict_markdown(rows: list[VerdictRow], note: str, prov) -> str:
    from bench.report.footer import footer_markdown
    from bench.report.tables import _md_table

    return _md_table(HEADER, [_cells(r) for r in rows]) + "\n" + note + "  \n\n" + footer_markdown(prov)


def verdict_latex(rows: list[VerdictRow], note: str, prov, caption: str, label: str) -> str:
    from bench.report.footer import footer_latex
    from bench.report.tables import tex_escape

    lines = ["% Generated by `bench report` from the result files; do not edit. Needs \\usepackage{booktabs}.",
             "\\begin{table*}[t]", "\\centering", "\\small", "\\begin{tabular}{lllrllp{4.2cm}}", "\\toprule",
             "Axis & A & B & A $-$ B & 95\\% interval & $p$ (Holm) & Verdict \\\\", "\\midrule"]
    for r in rows:
        lines.append(" & ".join(tex_escape(c) for c in _cells(r)) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    body = "\n".join(lines) + "\n"
    body += "\\par\\smallskip\n{\\footnotesize\\raggedright " + tex_escape(note) + "\\par}\n"
    body += footer_latex(prov, tex_escape)
    return body + f"\\caption{{{tex_escape(caption)}}}\n\\label{{{label}}}\n\\end{{table*}}\n"


def verdict_csv(rows: list[VerdictRow], prov) -> str:
    from bench.report.footer import footer_csv
    from bench.report.tables import _csv

    return _csv(HEADER, [_cells(r) for r in rows]) + footer_csv(prov)
