"""Result files: the source of truth of every run.

results/<suite>/<job_id>/
  job.json            the resolved job (config, hash)
  train.json          training report (train phase)
  model/              the trained captioner (train phase)
  captions.json       generated captions, COCO results format [{"image_id", "caption"}]
  scores.json         corpus and per-image scores, unavailable metrics, images skipped
  sweep.json          quality per decoding setting (when the suite sweeps a knob)
  result.json         status (ok | partial | failed), headline metrics, timings; written last
results/<suite>/summary.csv, summary.md: one row per job.

Every file is written atomically (temp file in the same folder, then rename), so a killed job leaves
either the old file or the new one, never half of one.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import files
from bench.metrics.quality import SUMMARY_METRICS

RESULT = files.RESULT  # bench/files.py: every result file name
#: How every table shows quality metrics (result.json keeps them unscaled, as pycocoevalcap returns them).
SCALE_NOTE = "Quality metrics (BLEU, METEOR, ROUGE-L, CIDEr, SPICE) x100"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; colleagues on a shared folder read per umask
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        from bench.space import no_space, space_error

        full = space_error(err)
        if full is not None:
            raise no_space(full, path, len(text.encode())) from err
        raise


@functools.cache
def _umask() -> int:
    """This process's umask: from /proc (no change to it), else by setting and restoring it once."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json(path: Path, payload: Any) -> None:
    write_atomic(path, json.dumps(payload, indent=1, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def finished(job_dir: Path) -> dict[str, Any] | None:
    """The job's result if it finished successfully, else None (failed or absent jobs are rerun).

    A `partial` job (a phase after eval failed, bench/runner.py) is not finished: it is rerun, and the
    rerun redoes only the phases without an output file. Summaries and reports still show its results.
    """
    path = job_dir / RESULT
    if not path.is_file():
        return None
    try:
        result = read_json(path)
    except (OSError, ValueError):
        return None
    if not isinstance(result, dict) or result.get("status") != "ok":
        return None
    from bench.derived import damaged

    return None if damaged(job_dir, result) else result  # an unreadable or changed output: redone


def collect(suite_dir: Path, keys: set[str] | None = None,
            on_damaged: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Every result.json under a suite folder (optionally only those of the given job keys).

    An unreadable one (truncated, not JSON, not an object) is a damaged job: it is left out and named
    through `on_damaged` (default: a warning on stderr); `bench run` redoes it (`finished` is None).
    """
    rows = []
    for path in sorted(suite_dir.glob(f"*/{RESULT}")):
        result = read_result(path, on_damaged or _warn)
        if result is None:
            continue
        if keys is None or result.get("key") in keys:
            rows.append(result)
    return rows


def read_result(path: Path, on_damaged: Callable[[str], None]) -> dict[str, Any] | None:
    """A result.json's dict, or None after naming it through `on_damaged` when it cannot be read."""
    try:
        result = read_json(path)
    except (OSError, ValueError) as err:
        problem = f"{type(err).__name__}: {err}"
    else:
        if isinstance(result, dict):
            return result
        problem = f"holds a {type(result).__name__}, not an object"
    on_damaged(f"{path} is unreadable ({problem}): a damaged job, left out here and redone by the next "
               f"`bench run`")
    return None


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def is_quality(name: str) -> bool:
    """Whether a result.json metric is a caption-quality score (or its interval bound), shown x100."""
    from bench.metrics.quality import METRICS

    return name.split("_ci_")[0] in METRICS


def with_scaled(name: str, value: float) -> list[tuple[str, float]]:
    """A metric as result.json holds it, and for quality scores also as tables show it (`<name>_x100`),
    so a number in MLflow matches either without guessing."""
    return [(name, value), *([(f"{name}_x100", 100 * value)] if is_quality(name) else [])]


def summary_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in sorted(results, key=lambda r: (r.get("task", ""), r.get("order", 0), r.get("label", ""))):
        metrics = r.get("metrics", {})
        row = {
            "model": r.get("label"), "task": r.get("task"), "seed": r.get("seed"),
            "paradigm": r.get("paradigm", ""), "params_M": _round(r.get("parameters", 0) / 1e6, 2),
            "train_min": _round(r.get("train_seconds", 0) / 60, 2), "status": r.get("status"),
        }
        for m in SUMMARY_METRICS:
            value = metrics.get(m)
            row[m] = "" if value is None else _round(100 * value, 1)
        row["images"] = metrics.get("images_scored", "")
        latency = metrics.get("latency_median_s")
        row["ms_per_image"] = "" if latency is None else _round(1000 * latency, 1)
        row["error"] = (r.get("error") or "").splitlines()[0][:120] if r.get("error") else ""
        rows.append(row)
    return rows


def _round(value: float, digits: int) -> float:
    return round(float(value), digits)


def to_csv(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def to_markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no results)\n"
    cols = [c for c in rows[0] if c != "error" or any(r["error"] for r in rows)]
    cells = [[str(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda values: "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(cols), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *(line(row) for row in cells)]) + "\n"


def write_summary(suite_dir: Path, results: list[dict[str, Any]]) -> str:
    """Write summary.csv and summary.md for these results; returns the Markdown table.

    summary.md ends with the scale of its metrics and the job set and invocation it was made from
    (bench/derived.py, which records both files in derived.json).
    """
    from bench.derived import describe, job_set, record

    rows = summary_rows(results)
    made_from = job_set(suite_dir, results)
    table = to_markdown(rows)
    write_atomic(suite_dir / files.SUMMARY_CSV, to_csv(rows))
    write_atomic(suite_dir / files.SUMMARY_MD, table + f"\n{SCALE_NOTE}; {describe(made_from)}.\n")
    record(suite_dir, [files.SUMMARY_CSV, files.SUMMARY_MD], made_from)
    return table
