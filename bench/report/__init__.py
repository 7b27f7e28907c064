"""Tables and figures for papers, made from a suite's result files (`bench report --suite S`).

For each task of the suite, under `results/<suite>/report/` (every file name starts with the task, so the
files of several tasks can sit side by side, in one folder and among a run's MLflow artifacts):

  <task>-main.{md,tex,csv}      quality: one row per model, metrics x100 with 95% intervals, best in bold,
                                published numbers (`reported`) in rows of their own
  <task>-latency.{md,tex,csv}   batch-1 latency, throughput, network evaluations per steps / beams / length
  <task>-verdict.{md,tex,csv}   per axis, which paradigm is ahead, by how much, interval and p (verdict.py),
                                from the suite's comparisons.json (bench/compare.py)
  <task>-report.md              both tables and every figure, for a README or a browser
  <task>-provenance.json        the footer's facts: commit, packages, hardware, date, images, seeds
  figures/<task>-<name>.{png,pdf}

Every table ends with the reproducibility footer (`footer.py`). The same results give the same bytes:
no clock is read (the date is the newest result's), rows and files come in a fixed order, and figures
carry fixed metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import files
from bench.report.data import Entry, Published, load_entries, load_published
from bench.report.figures import FIGURES, make_figures
from bench.report.footer import REPO_ROOT, Provenance, provenance
from bench.report.plotting import model_styles
from bench.report.tables import (
    latency_csv,
    latency_latex,
    latency_markdown,
    latency_rows,
    main_csv,
    main_latex,
    main_markdown,
    main_rows,
    main_table_notes,
    reported_rows,
)
from bench.report.verdict import verdict_csv, verdict_latex, verdict_markdown, verdict_note, verdict_rows

FORMATS = ("md", "tex", "csv")
DEFAULT_PUBLISHED = REPO_ROOT / "results" / "reference" / "published.yaml"

__all__ = ["DEFAULT_PUBLISHED", "FIGURES", "FORMATS", "Entry", "Provenance", "Published", "build_report",
           "load_entries", "load_published", "main_table_markdown"]


def _write(path: Path, text: str) -> Path:
    from bench.results import write_atomic

    write_atomic(path, text)
    return path


def _split(entries: list[Entry]) -> str:
    splits = sorted({str(r.scores["split"]) for e in entries for r in e.runs if r.scores and "split" in r.scores})
    return "/".join(splits) or "test"


def _report_md(suite: str, task: str, main_md: str, latency_md: str | None, figures: list[Path],
               split: str, errprop_md: str | None = None, verdict_md: str | None = None,
               diversity_md: str | None = None) -> str:
    parts = [f"# {suite}: {task}\n"]
    if verdict_md:
        parts += ["## Verdict per axis (paradigms compared)\n", verdict_md]
    parts += [f"## Caption quality ({split} split)\n", main_md]
    if latency_md:
        parts += ["## Latency\n", latency_md]
    if errprop_md:
        parts += ["## Error propagation\n", errprop_md]
    if diversity_md:
        parts += ["## Diversity at matched quality\n", diversity_md]
    pngs = [p for p in figures if p.suffix == ".png"]
    if pngs:
        parts.append("## Figures\n")
        for png in pngs:
            name = png.stem.removeprefix(f"{task}-").replace("_", " ")
            parts.append(f"![{name}](figures/{png.name})\n")
    return "\n".join(parts)


def _errprop_tables(entries: list[Entry], task: str, formats: Sequence[str], out: Path,
                    written: list[Path]) -> str | None:
    """Write <task>-errprop.{md,tex,csv} when any model has errprop results; returns the Markdown."""
    from bench.report.errprop import errprop_csv, errprop_latex, errprop_markdown

    md = errprop_markdown(entries)
    if md is None:
        return None
    for fmt in formats:
        text = {"md": lambda: md, "csv": lambda: errprop_csv(entries),
                "tex": lambda: errprop_latex(entries, f"Error propagation on {task}.", f"tab:{task}-errprop")}[fmt]()
        if text:
            written.append(_write(out / f"{task}-errprop.{fmt}", text))
    return md


def _diversity_tables(entries: list[Entry], task: str, formats: Sequence[str], out: Path,
                      written: list[Path]) -> str | None:
    """Write <task>-diversity.{md,csv} when any model sampled; returns the Markdown."""
    from bench.report.diversity import diversity_csv, diversity_markdown, matched

    found = matched(entries)
    md = diversity_markdown(entries, found)
    if md is None:
        return None
    for fmt in formats:
        text = {"md": lambda: md, "csv": lambda: diversity_csv(entries, found)}.get(fmt, lambda: None)()
        if text:
            written.append(_write(out / f"{task}-diversity.{fmt}", text))
    return md


def build_report(suite_dir: Path, results: list[dict[str, Any]], formats: Sequence[str] = FORMATS,
                 reported: Path | None = DEFAULT_PUBLISHED, task: str | None = None,
                 out_dir: Path | None = None, figures: bool = True, commit: str | None = None,
                 verdict_models: Sequence[str] | None = None) -> list[Path]:
    """Write the tables (in `formats`), the figures and report.md of a suite; returns the paths written.

    suite_dir: results/<suite>, holding one folder per job (named by the result's `job_id`).
    results: the suite's result.json dicts (e.g. `bench.results.collect(suite_dir, keys)`); failed ones
        are named in a note, not tabulated.
    reported: the committed file of published numbers; its rows appear only in the tables of the task it
        is about (COCO); None leaves them out.
    task: only this task (default: every task in `results`).
    out_dir: where to write (default suite_dir / "report").
    commit: the commit to print in the footer (default: `git rev-parse HEAD` of this checkout).
    verdict_models: the labels the verdict compares (the suite's `verdict_models`; None: every model).
    """
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown report format(s) {sorted(unknown)}; choose from {', '.join(FORMATS)}")
    suite_dir = Path(suite_dir)
    out = Path(out_dir) if out_dir is not None else suite_dir / "report"
    entries, failed = load_entries(suite_dir, results)
    published = load_published(reported) if reported is not None and Path(reported).is_file() else None
    # One style per label across the whole suite, so every task's figures agree.
    styles = model_styles([e.label for e in entries])
    tasks = [task] if task else sorted({e.task for e in entries})
    from bench.derived import describe, job_set, usable

    # comparisons.json made from other result files than these is not used (bench/derived.py)
    comparisons = _comparisons(suite_dir) if usable(suite_dir, files.COMPARISONS, results) else None
    made_from = describe(job_set(suite_dir, results))
    written: list[Path] = []
    for t in tasks:
        mine = [e for e in entries if e.task == t]
        if not mine:
            continue
        prov = provenance(mine, commit, made_from)
        rows, extra = main_rows(mine), reported_rows(published, t)
        notes = main_table_notes(mine, [f for f in failed if f.get("task") == t], published, extra)
        lat = latency_rows(mine)
        split = _split(mine)
        caption = f"Caption quality on {t} ({split} split)."
        lat_caption = f"Decoding cost on {t}: latency, throughput and network evaluations."
        main_md = main_markdown(rows, extra, notes, prov)
        lat_md = latency_markdown(lat, prov) if lat else None
        for fmt in formats:
            if fmt == "md":
                written.append(_write(out / f"{t}-main.md", main_md))
            elif fmt == "tex":
                written.append(_write(out / f"{t}-main.tex", main_latex(rows, extra, notes, prov, caption,
                                                                        f"tab:{t}-quality")))
            else:
                written.append(_write(out / f"{t}-main.csv", main_csv(rows, extra, prov)))
            if lat:
                if fmt == "md":
                    written.append(_write(out / f"{t}-latency.md", lat_md))
                elif fmt == "tex":
                    written.append(_write(out / f"{t}-latency.tex",
                                          latency_latex(lat, prov, lat_caption, f"tab:{t}-latency")))
                else:
                    written.append(_write(out / f"{t}-latency.csv", latency_csv(lat, prov)))
        errprop_md = _errprop_tables(mine, t, formats, out, written)
        diversity_md = _diversity_tables(mine, t, formats, out, written)
        figs = make_figures(mine, styles, out / "figures", prefix=f"{t}-") if figures else []
        written += figs
        judged = [e for e in mine if verdict_models is None or e.label in verdict_models]
        verdict_md = _verdict(out, t, judged, comparisons, prov, formats, written)
        from bench.report.extra import extra_markdown  # CLIPScore, CHAIR, ... with their directions

        other = extra_markdown(mine)
        quality_md = main_md + (f"\n### Other metrics\n\n{other}" if other else "")
        written.append(_write(out / f"{t}-report.md",
                              _report_md(suite_dir.name, t, quality_md, lat_md, figs, split, errprop_md, verdict_md,
                                         diversity_md)))
        from bench.results import write_json

        write_json(out / f"{t}-provenance.json", prov.to_dict())
        written.append(out / f"{t}-provenance.json")
    return written


def _comparisons(suite_dir: Path) -> dict[str, Any] | None:
    import json

    path = suite_dir / files.COMPARISONS
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def _verdict(out: Path, task: str, entries: list[Entry], comparisons: dict[str, Any] | None, prov: Provenance,
             formats: Sequence[str], written: list[Path]) -> str | None:
    """Write <task>-verdict.* (when two paradigms of learned models are there); its Markdown, else None."""
    rows = verdict_rows(entries, comparisons, task)
    if not rows:
        return None
    note = verdict_note(comparisons)
    md = verdict_markdown(rows, note, prov)
    for fmt in formats:
        if fmt == "md":
            written.append(_write(out / f"{task}-verdict.md", md))
        elif fmt == "tex":
            written.append(_write(out / f"{task}-verdict.tex", verdict_latex(
                rows, note, prov, f"Verdict on {task}: the paradigms compared, per axis.", f"tab:{task}-verdict")))
        else:
            written.append(_write(out / f"{task}-verdict.csv", verdict_csv(rows, prov)))
    return md


def main_table_markdown(paths: list[Path]) -> str:
    """The Markdown main and verdict tables among `paths` (what `bench report` prints), concatenated."""
    return "\n".join(p.read_text() for p in paths if p.name.endswith(("-main.md", "-verdict.md")))
