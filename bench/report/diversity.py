"""The diversity tables: every model's curve (diversity against mean-of-k CIDEr as it sweeps its own
sampling temperature) and, per pair of models, each diversity measure at matched mean-of-k CIDEr.

A model's curve is the temperature sweep of its own sampling method (bench/phases/diversity.py): the
masked model's "ancestral" sampler when it declares one (MDLM's ancestral sampling draws every token
from the model's distribution; a sampler that commits by confidence favours the mode), else its first
stochastic method. Top-p points and deterministic methods (beams) are listed beside, not on the curve.
Matching (bench/metrics/diversity.py `matched_quality`) interpolates each curve at targets inside the
quality range both reach, never extrapolating; a pair without a common range is reported as such.
The seeds are those whose jobs ran the diversity phase, named in every row.
"""

from __future__ import annotations

from typing import Any

from bench.metrics import diversity as dm
from bench.report.data import Entry

MEASURES = {"div1": "Div-1", "div2": "Div-2", "mbleu4": "mBLEU-4", "self_cider": "Self-CIDEr"}
#: whether higher means more diverse (mBLEU-4: captions that agree with each other score high)
MORE_DIVERSE_HIGHER = {"div1": True, "div2": True, "mbleu4": False, "self_cider": True}
CURVE_COLUMNS = ("model", "seeds", "method", "temperature", "top-p", "on curve", "mean-of-k CIDEr (x100)",
                 "best-of-k CIDEr (x100)", "Div-1", "Div-2", "mBLEU-4", "Self-CIDEr", "vocabulary")
MATCHED_COLUMNS = ("A", "B", "seed", "measure", "common CIDEr range (x100)", "at 25%", "at 50%", "at 75%")
FRACTIONS = (0.25, 0.5, 0.75)


def _run(e: Entry):
    """The run whose diversity is compared: the lowest seed that ran the diversity phase (None if none)."""
    runs = sorted((r for r in e.runs if (r.diversity or {}).get("methods")), key=lambda r: r.result.get("seed", 0))
    return runs[0] if runs else None


def curve_method(report: dict[str, Any]) -> str | None:
    """The method a model's curve follows: "ancestral" when declared, else the first stochastic one."""
    methods = [m for m in report.get("sampling_methods", []) if m in report.get("methods", {})
               and not report["methods"][m].get("deterministic") and report["methods"][m].get("sweep")]
    return "ancestral" if "ancestral" in methods else (methods[0] if methods else None)


def curve(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The curve's points: the method's temperature sweep at its own top-p."""
    method = curve_method(report)
    if method is None:
        return []
    sweep = report["methods"][method]["sweep"]
    top_p = next(p["top_p"] for p in sweep if p["default"])
    return [p for p in sweep if p["top_p"] == top_p]


def curve_rows(entries: list[Entry]) -> list[list[str]]:
    rows = []
    for e in entries:
        run = _run(e)
        if run is None:
            continue
        seeds = " ".join(str(r.result.get("seed", 0)) for r in e.runs if (r.diversity or {}).get("methods"))
        on_curve = {id(p) for p in curve(run.diversity)}
        for method in run.diversity.get("sampling_methods", []):
            for p in run.diversity.get("methods", {}).get(method, {}).get("sweep", []):
                c = p["corpus"]
                rows.append([e.label, seeds, method, "-" if p["temperature"] is None else f"{p['temperature']:g}",
                             "-" if p["top_p"] is None else f"{p['top_p']:g}", "yes" if id(p) in on_curve else "no",
                             f"{100 * c['cider_mean_of_k']:.1f}", f"{100 * c['cider_best_of_k']:.1f}",
                             *(f"{c[m]:.3f}" for m in MEASURES), f"{c['vocab']:.0f}"])
    return rows


def matched(entries: list[Entry], n_resamples: int = 1000) -> list[dict[str, Any]]:
    """Per pair of models with curves and per measure: `matched_quality` at FRACTIONS of the common range."""
    curves = [(e, run.result.get("seed", 0), points) for e in entries if (run := _run(e)) is not None
              and len(points := curve(run.diversity)) >= 1]
    out = []
    for n, (ea, sa, pa) in enumerate(curves):
        for eb, sb, pb in curves[n + 1:]:
            for measure in MEASURES:
                result = dm.matched_quality([p["per_image"] for p in pa], [p["per_image"] for p in pb], measure,
                                            FRACTIONS, n_resamples=n_resamples)
                out.append({"a": ea, "b": eb, "seeds": (sa, sb), "measure": measure, **result})
    return out


def _cell(target: dict[str, Any]) -> str:
    iv = "" if target["low"] != target["low"] else f" [{target['low']:+.3f}, {target['high']:+.3f}]"
    return f"{target['a']:.3f} vs {target['b']:.3f}: {target['delta']:+.3f}{iv} @ {100 * target['quality']:.1f}"


def matched_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r in results:
        seed = str(r["seeds"][0]) if r["seeds"][0] == r["seeds"][1] else f"{r['seeds'][0]} / {r['seeds'][1]}"
        head = [r["a"].label, r["b"].label, seed, MEASURES[r["measure"]]]
        if not r["reachable"]:
            ranges = (f"none: A {100 * r['range_a'][0]:.1f}-{100 * r['range_a'][1]:.1f}, "
                      f"B {100 * r['range_b'][0]:.1f}-{100 * r['range_b'][1]:.1f}")
            rows.append([*head, ranges, "-", "-", "-"])
            continue
        low, high = r["targets"][0]["quality"], r["targets"][-1]["quality"]
        cells = [_cell(t) for t in r["targets"]] + ["-"] * (len(FRACTIONS) - len(r["targets"]))
        rows.append([*head, f"{100 * low:.1f}-{100 * high:.1f} (targets)", *cells])
    return rows


NOTE = ("Curves: each model's own sampling method swept over temperature (autoregressive models also over "
        "top-p at temperature 1, and the top k beams beside, not on the curve); k captions per image; "
        "mean-of-k CIDEr-D is the quality axis. Matched: per pair, each measure interpolated along each "
        "model's curve at 25/50/75% of the mean-of-k CIDEr range both curves reach (never extrapolated): "
        "'A vs B: A - B [95% interval from resampling images] @ target CIDEr (x100)'. Higher Div-1, Div-2 "
        "and Self-CIDEr and lower mBLEU-4 mean more diverse. Seeds: the jobs that ran the diversity phase "
        "(a suite may run it on one seed only).")


def diversity_markdown(entries: list[Entry], found: list[dict[str, Any]]) -> str | None:
    """The curves' table and the matched table (`found`: `matched(entries)`), with the note."""
    from bench.report.tables import _md_table

    rows = curve_rows(entries)
    if not rows:
        return None
    text = _md_table(list(CURVE_COLUMNS), rows) + "\n"
    pairs = matched_rows(found)
    if pairs:
        text += "\n" + _md_table(list(MATCHED_COLUMNS), pairs) + "\n"
    return text + "\n" + NOTE + "\n"


def diversity_csv(entries: list[Entry], found: list[dict[str, Any]]) -> str | None:
    from bench.report.tables import _csv

    rows = curve_rows(entries)
    if not rows:
        return None
    return _csv(list(CURVE_COLUMNS), rows) + "\n" + _csv(list(MATCHED_COLUMNS), matched_rows(found))
