"""The verdict table: per axis, which paradigm is ahead, by how much, with interval and p-value.

Paradigms are the labels the models declare. No representative of a paradigm is chosen on the test
split (the eval phase scores only the test split, so there are no validation scores to choose by): a
paradigm is "ahead" on an axis only when one of its learned models significantly beats every learned
model of the other paradigm (an intersection-union test: its p is the largest of those Holm-adjusted p).
The row then shows that model against its closest rival; otherwise the best of each side, with "no
significant difference" or "neither ahead of every model". Axes:

- each quality metric: the paired two-level bootstrap tests from the suite's comparisons.json
  (bench/compare.py): difference A - B (x100) with its Holm-adjusted interval (it excludes 0 exactly when
  the test is significant) and the Holm-adjusted p-value, "<= x" at the resampling floor.
- latency at equal quality, per pair of learned models of different paradigms (bench/report/cost.py):
  the latency ratio A / B at CIDEr targets inside both models' reachable ranges, interpolated along each
  model's own Pareto front (never extrapolated; a target a model cannot reach says so), and the dual,
  CIDEr A - B at common latencies; the interval from the sweep's CIDEr resamples, no p-value.
- diversity (when the models sampled): per pair of learned models of different paradigms, Div-1,
  Div-2, mBLEU-4 and Self-CIDEr at matched mean-of-k CIDEr (the middle of the range both curves
  reach, bench/report/diversity.py), A - B with an unadjusted interval over images.
- error propagation: per learned model and injection level (default probe setting), the CIDEr lost
  beyond the substituted word with the right-word control subtracted (bench/report/errprop.py), with
  its interval over images and seeds; no best model is picked, and an interval containing 0 is
  reported as no evidence. The repetition rate of every model (raw output), descriptive.
"""

from __future__ import annotations

import math
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


def _beats_all(found: list[dict[str, Any]], side: str, model: str, others: set[str], sign: int) -> list | None:
    """The tests of `model` (on `side`, "a" or "b") against every model of the other paradigm, when it
    significantly beats each of them; else None."""
    other = "b" if side == "a" else "a"
    mine = [t for t in found if t[f"model_{side}"] == model]
    if {t[f"model_{other}"] for t in mine} != others:
        return None
    ahead = (1 if side == "a" else -1) * sign
    return mine if all(t["p_holm"] <= ALPHA and ahead * t["delta"] > 0 for t in mine) else None


def _interval(t: dict[str, Any], scale: float, digits: int) -> str:
    if "low_holm" not in t:  # comparisons written before adjusted intervals existed
        return f"[{scale * t['low']:+.{digits}f}, {scale * t['high']:+.{digits}f}] (unadjusted)"
    low, high = t["low_holm"], t["high_holm"]
    if low is None or high is None:
        return "unbounded"
    return f"[{scale * low:+.{digits}f}, {scale * high:+.{digits}f}]"


def _p_cell(t: dict[str, Any]) -> str:
    floor = t.get("p_floor")
    at_floor = floor is not None and t["p"] <= floor * (1 + 1e-9)
    return f"<= {t['p_holm']:.2g}" if at_floor else _p(t["p_holm"])


def pair_row(metric: str, pa: str, pb: str, found: list[dict[str, Any]]) -> VerdictRow:
    """One axis for two paradigms: "pa ahead" only when one model of pa significantly beats every model
    of pb (an intersection-union test: its p is the largest Holm-adjusted p of those tests), and the same
    the other way; no representative is picked on the test split."""
    sign = 1 if found[0].get("higher_is_better", True) else -1
    models_a = list(dict.fromkeys(t["model_a"] for t in found))
    models_b = list(dict.fromkeys(t["model_b"] for t in found))
    word = " more diverse" if metric.startswith("diversity ") else " ahead"
    winner = None
    for side, models, others, paradigm, rival in (("a", models_a, set(models_b), pa, pb),
                                                 ("b", models_b, set(models_a), pb, pa)):
        for m in models:
            tests = _beats_all(found, side, m, others, sign)
            if tests is not None:
                t = max(tests, key=lambda t: (t["p_holm"], sign * (1 if side == "a" else -1) * -t["delta"]))
                winner = (t, f"{paradigm}{word} ({m} beats every {rival} model)")
                break
        if winner:
            break
    if winner is None:
        best_a = max(models_a, key=lambda m: sign * next(t["score_a"] for t in found if t["model_a"] == m))
        best_b = max(models_b, key=lambda m: sign * next(t["score_b"] for t in found if t["model_b"] == m))
        t = next(t for t in found if t["model_a"] == best_a and t["model_b"] == best_b)
        winner = (t, "no significant difference" if t["p_holm"] > ALPHA
                  else f"neither ahead of every model (best of each: {t['model_a' if sign * t['delta'] > 0 else 'model_b']} better)")
    t, verdict = winner
    scale, digits = (1, 3) if metric.startswith("diversity ") else (100, 1)
    return VerdictRow(_axis(metric), _side(pa, t["model_a"]), _side(pb, t["model_b"]),
                      f"{scale * t['delta']:+.{digits}f}", _interval(t, scale, digits), _p_cell(t), verdict)


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
                if found:
                    rows.append(pair_row(metric, pa, pb, found))
    return rows


def _ms(t: float | None) -> str:
    return "unreachable" if t is None else f"{1000 * t:.1f} ms"


def latency_row(groups: dict[str, list[Entry]]) -> list[VerdictRow]:
    """Per pair of learned models of different paradigms (bench/report/cost.py): the latency ratio A / B
    at CIDEr targets inside both reachable ranges (and at the better model's best CIDEr, which the other
    cannot reach), then CIDEr A - B at common latencies. Timings are not resampled: the interval comes
    from the CIDEr resamples of the sweep; no test, so no p."""
    from bench.report.cost import compare_pair, curve

    curves = {e.label: curve(e) for g in groups.values() for e in g}
    paradigms = list(groups)
    rows = []
    for n, pa in enumerate(paradigms):
        for pb in paradigms[n + 1:]:
            for ea in groups[pa]:
                for eb in groups[pb]:
                    rows += [_cost_row(c, pa, pb, ea.label, eb.label)
                             for c in compare_pair(curves[ea.label], curves[eb.label])]
    return rows


def _cost_row(c, pa: str, pb: str, la: str, lb: str) -> VerdictRow:
    interval = "–" if c.low is None else (f"[x{c.low:.2f}, x{c.high:.2f}]" if c.kind == "latency at CIDEr"
                                          else f"[{100 * c.low:+.1f}, {100 * c.high:+.1f}]")
    if c.reached < 1.0 and c.low is not None:
        interval += f" ({100 * c.reached:.0f}% of resamples reach it)"
    if c.kind == "latency at CIDEr":
        axis = f"latency at CIDEr {100 * c.level:.1f} (batch 1, along each front)"
        a, b = _side(pa, f"{la} {_ms(c.a)}"), _side(pb, f"{lb} {_ms(c.b)}")
        diff = "–" if c.value is None else f"x{c.value:.2f}"
        if c.value is None:
            verdict = f"{NO_TEST} ({la if c.a is None else lb} cannot reach it)"
        else:
            verdict = f"{NO_TEST} (timings; {pa if c.value < 1 else pb} faster)"
    else:
        axis = f"CIDEr at {1000 * c.level:.1f} ms (batch 1, along each front)"
        fmt = lambda q: "out of range" if q is None else f"{100 * q:.1f}"  # noqa: E731
        a, b = _side(pa, f"{la} {fmt(c.a)}"), _side(pb, f"{lb} {fmt(c.b)}")
        diff = "–" if c.value is None else f"{100 * c.value:+.1f}"
        verdict = NO_TEST + ("" if c.value is None else f" (timings; {pa if c.value > 0 else pb} better at equal latency)")
    return VerdictRow(axis, a, b, diff, interval, "–", verdict)


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
        interval = f"[{t['low']:+.3f}, {t['high']:+.3f}] (unadjusted)"
        if math.isnan(t["low"]) or math.isnan(t["high"]):
            # a curve of one point (a method with no temperature sweep) matches only at that point, where
            # the resamples' curves rarely reach: no interval, so no claim either way
            interval, verdict = "–", f"{NO_TEST}: no interval (a curve of one point)"
        elif t["low"] > 0 or t["high"] < 0:
            ahead = pa if (t["delta"] > 0) == MORE_DIVERSE_HIGHER[r["measure"]] else pb
            verdict = f"{ahead} more diverse (unadjusted interval)"
        else:
            verdict = "no difference shown (interval contains 0)"
        sa, sb = r["seeds"]  # the seed whose diversity phase ran (a suite may run it on one seed only)
        rows.append(VerdictRow(f"{axis} {100 * t['quality']:.1f}", _side(pa, f"{r['a'].label} {t['a']:.3f} (seed {sa})"),
                               _side(pb, f"{r['b'].label} {t['b']:.3f} (seed {sb})"), f"{t['delta']:+.3f}",
                               interval, "–", verdict))
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
                interval = "–" if low != low else f"[{100 * low:+.1f}, {100 * high:+.1f}] (unadjusted)"
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
    return ("No representative is picked on the test split (the eval phase scores the test split only; no "
            "validation scores exist): a paradigm is ahead on an axis only when one of its models beats every "
            "model of the other paradigm, and the row shows that model against its closest rival (the p is the "
            "largest Holm-adjusted p of those tests). "
            f"Quality: A - B x100, interval and p from the {method}" + (f" ({n} resamples)" if n else "") +
            f"; significant at {ALPHA}; the interval is Holm-adjusted (it excludes 0 exactly when the test is "
            "significant); a p at the resampling floor is printed as \"<= x\". Latency at equal quality: per "
            "pair, the latency ratio A / B at CIDEr targets inside both models' reachable ranges, interpolated "
            "along each model's own Pareto front (log latency, never extrapolated). Diversity: A - B at the "
            "same mean-of-k CIDEr (x100, in the axis) on each model's temperature curve, unadjusted 95% interval "
            "over images. Error propagation: each model and level on its own (default probe setting), drop "
            "beyond the substituted word net of the right-word control, 95% interval over images and seeds; "
            "descriptive.")


# ---------------------------------------------------------------- renderers

HEADER = ["axis", "A", "B", "A - B", "interval (Holm-adjusted)", "p (Holm)", "verdict"]


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
             "Axis & A & B & A $-$ B & Interval (Holm-adjusted) & $p$ (Holm) & Verdict \\\\", "\\midrule"]
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
