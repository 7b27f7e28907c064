"""The main quality table and the latency table, each in Markdown, LaTeX (booktabs) and CSV.

Main table: one row per model (mean over seeds), metrics x100 with one decimal and their 95% two-level
bootstrap interval (seeds and images), the best measured value of each column in bold (ties at the printed precision all bold).
Published numbers go in rows of their own under a "reported" header and never take part in the bold.
Latency table: per model, the default decoding (batch-1 latency with its spread over repeats, throughput
at the largest batch that was measured, network evaluations and tokens as run, the dtype), then one row
per value of each sweep the captioner declared (its cost knobs, a forced generated length).
"""

from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass, field
from typing import Any

from bench.metrics.catalog import higher_is_better
from bench.report.data import METRICS, Entry, Published
from bench.report.footer import Provenance, footer_csv, footer_latex, footer_markdown

DASH = "–"  # a metric that was not measured (or not reported)
#: How the main table's intervals are made (named under the table).
CONFIDENCE_NOTE = ("95% two-level percentile bootstrap interval: training seeds resampled, then the test images "
                   "they share, corpus metrics recomputed per resample (BLEU's and METEOR's summed statistics, "
                   "CIDEr-D's document frequencies); one seed: images only")
_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "–": "--"}


def tex_escape(text: str) -> str:
    """Escape LaTeX's special characters in plain text."""
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in str(text))


def format_params(n: int) -> str:
    """A parameter count as printed in papers: 0, 850K, 1.1M, 312M, 1.2B."""
    if n <= 0:
        return "0"
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            value = n / scale
            return f"{value:.1f}{suffix}" if value < 10 else f"{value:.0f}{suffix}"
    return str(n)


@dataclass
class Cell:
    """One metric of one row, x100."""

    point: float | None
    low: float | None = None
    high: float | None = None
    bold: bool = False
    text: str | None = None  # printed instead of the one-decimal point (reported numbers keep theirs)

    @property
    def shown(self) -> str:
        if self.point is None:
            return DASH
        return self.text if self.text is not None else f"{self.point:.1f}"


@dataclass
class MainRow:
    model: str
    paradigm: str
    pretraining: str
    params: str
    cells: dict[str, Cell]
    source: str = "measured"  # or the reported row's source (paper / repository)
    seeds: list[int] = field(default_factory=list)


def main_rows(entries: list[Entry]) -> list[MainRow]:
    """Measured rows, with the best value per column marked."""
    rows = []
    for e in entries:
        cells = {}
        for m in METRICS:
            value = e.metric(m)
            if value is None:
                cells[m] = Cell(None)
            else:
                point, low, high = value
                cells[m] = Cell(100 * point, None if low is None else 100 * low, None if high is None else 100 * high)
        rows.append(MainRow(e.label, e.paradigm, e.pretraining, format_params(e.parameters), cells, seeds=e.seeds))
    for m in METRICS:
        # Compare what is printed, so two rows that read the same are both bold.
        shown = [round(r.cells[m].point, 1) for r in rows if r.cells[m].point is not None]
        top = (max if higher_is_better(m) else min)(shown) if shown else None  # bench/metrics/catalog.py
        for r in rows:
            r.cells[m].bold = bool(shown) and r.cells[m].point is not None and round(r.cells[m].point, 1) == top
    return rows


def reported_rows(published: Published | None, task: str) -> list[MainRow]:
    """Published rows for `task` (none when the published numbers are on another dataset)."""
    if published is None or published.task != task:
        return []
    rows = []
    for r in published.rows:
        pre = str(r.get("pretraining", "-"))
        metrics = r.get("metrics", {})
        rows.append(MainRow(str(r["model"]), str(r.get("paradigm", "")), DASH if pre == "-" else pre, DASH,
                            {m: Cell(float(metrics[m]), text=str(metrics[m])) if m in metrics else Cell(None)
                             for m in METRICS},
                            source=str(r.get("source", "reported"))))
    return rows


def _notes(entries: list[Entry], failed: list[dict[str, Any]], published: Published | None,
           reported: list[MainRow]) -> list[str]:
    with_ci = [e for e in entries if any((e.metric(m) or (0, None))[1] is not None for m in METRICS)]
    if not with_ci:
        interval = "no bootstrap intervals recorded; "
    elif all(e.two_level or len(e.runs) == 1 for e in with_ci):
        interval = f"brackets: {CONFIDENCE_NOTE}; "
    else:
        interval = "brackets: 95% percentile bootstrap interval over test images; "
    notes = ["Metrics x100; " + interval + "bold: best measured value per column."]
    missing = sorted({m for e in entries for m in METRICS if e.metric(m) is None})
    for m in missing:
        # The recorded reason names local paths; the table gets a portable one.
        why = " (needs the Stanford CoreNLP 3.6.0 jars, absent offline)" if m == "SPICE" else ""
        notes.append(f"{m} {DASH}: not measured{why}.")
    from bench.report.extra import uncaptioned_note  # caption files scored with `bench score`

    if uncaptioned_note(entries):
        notes.append(uncaptioned_note(entries))
    multi = [e for e in entries if len(e.runs) > 1]
    if multi:
        notes.append("Mean over training seeds for " + ", ".join(f"{e.label} ({len(e.runs)})" for e in multi)
                     + "; standard deviations over seeds in seeds.md.")
    bare = [e.label for e in multi if not e.two_level]
    if bare:
        notes.append("No interval for " + ", ".join(bare) + ": its seeds' two-level bootstrap (seeds.json, "
                     "written by `bench run` and `bench report`) is missing.")
    if reported and published is not None:
        notes.append(f"Reported rows: numbers published by their authors on {published.task} {published.split}, "
                     "copied from the sources named, not measured here; not comparable to other datasets.")
    if failed:
        notes.append("Failed jobs (not in the table): "
                     + ", ".join(f"{r.get('label')} seed {r.get('seed')}" for r in failed) + ".")
    return notes


# ---------------------------------------------------------------- main table renderers

def _md_cell(c: Cell) -> str:
    text = f"**{c.shown}**" if c.bold else c.shown
    return text + (f" [{c.low:.1f}, {c.high:.1f}]" if c.low is not None and c.high is not None else "")


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    clean = [[v.replace("|", "\\|") for v in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in clean) for i in range(len(header))]
    line = lambda values: "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(clean[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *(line(r) for r in clean[1:])]) + "\n"


def main_markdown(rows: list[MainRow], reported: list[MainRow], notes: list[str], prov: Provenance) -> str:
    head = ["model", "paradigm", "pre-training data", "params", *METRICS]
    out = _md_table(head, [[r.model, r.paradigm, r.pretraining, r.params, *(_md_cell(r.cells[m]) for m in METRICS)]
                           for r in rows])
    if reported:
        # A table of its own: reported numbers are never rows of the measured table.
        out += "\n**Reported** (published numbers, not measured here):\n\n"
        out += _md_table(["model", "paradigm", "pre-training data", *METRICS, "source"],
                         [[r.model, r.paradigm, r.pretraining, *(r.cells[m].shown for m in METRICS), r.source]
                          for r in reported])
    return out + "\n" + "".join(f"{n}  \n" for n in notes) + "\n" + footer_markdown(prov)


def _tex_cell(c: Cell) -> str:
    if c.point is None:
        return "--"
    text = f"\\textbf{{{c.shown}}}" if c.bold else c.shown
    if c.low is not None and c.high is not None:
        text += f" {{\\scriptsize [{c.low:.1f}, {c.high:.1f}]}}"
    return text


def main_latex(rows: list[MainRow], reported: list[MainRow], notes: list[str], prov: Provenance,
               caption: str, label: str) -> str:
    ncols = 4 + len(METRICS)
    lines = [
        "% Generated by `bench report` from the result files; do not edit. Needs \\usepackage{booktabs}.",
        "\\begin{table*}[t]", "\\centering", "\\small",
        "\\begin{tabular}{llll" + "c" * len(METRICS) + "}", "\\toprule",
        " & ".join(["Model", "Paradigm", "Pre-training data", "Params", *map(tex_escape, METRICS)]) + " \\\\",
        "\\midrule",
    ]
    for r in rows:
        lines.append(" & ".join([tex_escape(r.model), tex_escape(r.paradigm), tex_escape(r.pretraining),
                                 tex_escape(r.params), *(_tex_cell(r.cells[m]) for m in METRICS)]) + " \\\\")
    if reported:
        header = "\\emph{reported (published numbers, not measured here)}"
        lines += ["\\midrule", f"\\multicolumn{{{ncols}}}{{l}}{{{header}}} \\\\"]
        for r in reported:
            lines.append(" & ".join([tex_escape(r.model), tex_escape(r.paradigm), tex_escape(r.pretraining),
                                     tex_escape(r.params), *(_tex_cell(r.cells[m]) for m in METRICS)]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    body = "\n".join(lines) + "\n"
    body += "\\par\\smallskip\n{\\footnotesize\\raggedright " + " ".join(map(tex_escape, notes)) + "\\par}\n"
    body += footer_latex(prov, tex_escape)
    return body + f"\\caption{{{tex_escape(caption)}}}\n\\label{{{label}}}\n\\end{{table*}}\n"


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def main_csv(rows: list[MainRow], reported: list[MainRow], prov: Provenance) -> str:
    """Measured rows then reported rows; the `source` column says which (reported rows: their source)."""
    header = ["model", "paradigm", "pretraining", "params", "seeds", "source"]
    for m in METRICS:
        header += [m, f"{m}_low", f"{m}_high", f"{m}_best"]
    body = []
    for r in [*rows, *reported]:
        row: list[Any] = [r.model, r.paradigm, r.pretraining, r.params, " ".join(map(str, r.seeds)),
                          "measured" if r.source == "measured" else f"reported: {r.source}"]
        for m in METRICS:
            c = r.cells[m]
            row += [c.text if c.text is not None else _num(c.point), _num(c.low), _num(c.high), int(c.bold)]
        body.append(row)
    return _csv(header, body) + footer_csv(prov)


# ---------------------------------------------------------------- latency table

@dataclass
class LatencyRow:
    model: str
    paradigm: str
    setting: str
    median_ms: float
    p90_ms: float
    network_evals: float | None
    throughput: float | None = None  # images/s at `batch` (default decoding only)
    batch: int | None = None
    iqr_ms: float | None = None  # spread of the median over repeats (None: one repeat, or not recorded)
    tokens: float | None = None  # tokens generated per caption, as run (None: not reported)
    dtype: str = ""  # the compute dtype observed (default row only)


def _mean(values: list[float]) -> float:
    return statistics.fmean(values)


def _mean_or_none(values: list[float | None]) -> float | None:
    return None if not values or None in values else _mean(values)  # type: ignore[arg-type]


def sweep_value(name: str, row: dict[str, Any]) -> Any:
    """The swept value a latency row stands for (`value`; older files: read from the setting)."""
    if "value" in row:
        return row["value"]
    from bench.phases.latency import LENGTH

    return row["setting"].get("max_new_tokens") if name == LENGTH else row["setting"].get(name)


def default_setting(cost_knobs: list[str], decoding: dict[str, Any]) -> str:
    """The default decoding, named by the captioner's cost knobs, e.g. 'default (steps=10)'."""
    named = [f"{k}={decoding[k]}" for k in cost_knobs if decoding.get(k) is not None]
    return f"default ({', '.join(named)})" if named else "default"


def _row(e: Entry, setting: str, batch1: list[dict[str, Any]]) -> LatencyRow:
    """Seeds averaged; IQR only when every seed measured more than one repeat."""
    iqrs = [b.get("iqr_s") if b.get("repeats", 1) > 1 else None for b in batch1]
    iqr = _mean_or_none(iqrs)
    tokens = _mean_or_none([b.get("tokens") for b in batch1])
    return LatencyRow(e.label, e.paradigm, setting, 1000 * _mean([b["median_s"] for b in batch1]),
                      1000 * _mean([b["p90_s"] for b in batch1]),
                      _mean_or_none([b.get("network_evals") for b in batch1]),
                      iqr_ms=None if iqr is None else 1000 * iqr, tokens=tokens)


def latency_rows(entries: list[Entry]) -> list[LatencyRow]:
    """Per model: the default decoding, then every swept setting (seeds averaged)."""
    rows = []
    for e in entries:
        reports = [r.latency for r in e.runs if r.latency]
        if not reports:
            continue
        # Throughput at the largest batch every seed measured (larger ones may have run out of memory).
        sizes = [{t["batch_size"] for t in rep.get("throughput", []) if "images_per_s" in t} for rep in reports]
        common = set.intersection(*sizes) if sizes else set()
        batch = max(common) if common else None
        first = _row(e, default_setting(e.cost_knobs(), reports[0].get("decoding", {})),
                     [rep["batch1"] for rep in reports])
        if batch:
            first.throughput = _mean([next(t["images_per_s"] for t in rep["throughput"]
                                           if t.get("batch_size") == batch and "images_per_s" in t)
                                      for rep in reports])
            first.batch = batch
        first.dtype = "/".join(sorted({_dtype_and_stack(rep) for rep in reports}))
        rows.append(first)
        names = list(dict.fromkeys(n for rep in reports for n in rep.get("sweeps", {})))
        for name in names:
            points: dict[Any, list[dict[str, Any]]] = {}
            for rep in reports:
                for row in rep.get("sweeps", {}).get(name, []):
                    points.setdefault(sweep_value(name, row), []).append(row)
            for value in sorted(points, key=lambda v: (v is None, v)):
                rows.append(_row(e, f"{name}={value}", points[value]))
    return rows


def _evals(v: float | None) -> str:
    return DASH if v is None else (f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}")


def _ms(v: float | None) -> str:
    return DASH if v is None else f"{v:.1f}"


def _tput(r: LatencyRow) -> str:
    return DASH if r.throughput is None else f"{r.throughput:.1f} (batch {r.batch})"


LATENCY_NOTE = ("Batch-1 latency: median over repeats of the per-image median after warm-up, its interquartile "
                "range over repeats, and the 90th percentile of every timed image; measured with no other job "
                "on the machine. Throughput: images/s at the largest batch measured, default decoding only. "
                "Network evaluations and tokens: per caption, as run (decoder passes until the caption ended). "
                "Seeds averaged.")


def _dtype_and_stack(report: dict[str, Any]) -> str:
    """The dtype cell: the dtype the run computed in, and the inference stack when not eager."""
    dtype = str(report.get("environment", {}).get("dtype", "?"))
    stack = report.get("stack", {}).get("stack", "eager")
    return dtype if stack == "eager" else f"{dtype}, {stack}"


def latency_markdown(rows: list[LatencyRow], prov: Provenance) -> str:
    head = ["model", "paradigm", "setting", "latency (ms/image)", "IQR (ms)", "p90 (ms)", "throughput (images/s)",
            "network evals", "tokens", "dtype"]
    body = [[r.model, r.paradigm, r.setting, f"{r.median_ms:.1f}", _ms(r.iqr_ms), f"{r.p90_ms:.1f}", _tput(r),
             _evals(r.network_evals), _evals(r.tokens), r.dtype] for r in rows]
    return _md_table(head, body) + "\n" + LATENCY_NOTE + "  \n\n" + footer_markdown(prov)


def latency_latex(rows: list[LatencyRow], prov: Provenance, caption: str, label: str) -> str:
    lines = ["% Generated by `bench report` from the result files; do not edit. Needs \\usepackage{booktabs}.",
             "\\begin{table}[t]", "\\centering", "\\small", "\\begin{tabular}{lllrrrrrrl}", "\\toprule",
             "Model & Paradigm & Setting & Latency (ms) & IQR (ms) & p90 (ms) & Throughput (img/s) & "
             "Net.\\ evals & Tokens & Dtype \\\\",
             "\\midrule"]
    previous = None
    for r in rows:
        if previous is not None and r.model != previous:
            lines.append("\\midrule")
        first = r.model != previous
        previous = r.model
        tput = "--" if r.throughput is None else f"{r.throughput:.1f} {{\\scriptsize (b{r.batch})}}"
        lines.append(" & ".join([tex_escape(r.model) if first else "", tex_escape(r.paradigm) if first else "",
                                 tex_escape(r.setting), f"{r.median_ms:.1f}", tex_escape(_ms(r.iqr_ms)),
                                 f"{r.p90_ms:.1f}", tput, tex_escape(_evals(r.network_evals)),
                                 tex_escape(_evals(r.tokens)), tex_escape(r.dtype)]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    body = "\n".join(lines) + "\n"
    body += "\\par\\smallskip\n{\\footnotesize\\raggedright " + tex_escape(LATENCY_NOTE) + "\\par}\n"
    body += footer_latex(prov, tex_escape)
    return body + f"\\caption{{{tex_escape(caption)}}}\n\\label{{{label}}}\n\\end{{table}}\n"


def latency_csv(rows: list[LatencyRow], prov: Provenance) -> str:
    header = ["model", "paradigm", "setting", "median_ms", "iqr_ms", "p90_ms", "throughput_images_per_s",
              "throughput_batch_size", "network_evals", "tokens", "dtype"]
    body = [[r.model, r.paradigm, r.setting, f"{r.median_ms:.3f}", "" if r.iqr_ms is None else f"{r.iqr_ms:.3f}",
             f"{r.p90_ms:.3f}", "" if r.throughput is None else f"{r.throughput:.3f}",
             "" if r.batch is None else r.batch, "" if r.network_evals is None else _evals(r.network_evals),
             "" if r.tokens is None else _evals(r.tokens), r.dtype] for r in rows]
    return _csv(header, body) + footer_csv(prov)


def main_table_notes(entries: list[Entry], failed: list[dict[str, Any]], published: Published | None,
                     reported: list[MainRow]) -> list[str]:
    """The notes printed under the main table (public so callers can reuse them)."""
    return _notes(entries, failed, published, reported)
