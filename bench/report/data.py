"""What a report reads: a suite's result files grouped per model, and the committed published numbers.

A suite folder holds one job folder per (model variant, task, seed); the report groups the seeds of a
model on a task into one `Entry`. A model's number is the mean over its seeds, and its interval the
two-level bootstrap (seeds, then images) that bench/compare.py writes to the suite's seeds.json. Only the
result files are read (never MLflow), and only jobs whose result.json says `ok` or `partial` (a phase
after eval failed: its scores stand); failed ones are listed in a note under the tables.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import files
from bench.metrics.quality import TABLE_METRICS

#: Columns of the main table, in order; all are "higher is better".
METRICS = TABLE_METRICS

def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


@dataclass
class Run:
    """One finished job: its result.json and whichever phase files it wrote."""

    result: dict[str, Any]
    scores: dict[str, Any] | None = None
    sweep: list[dict[str, Any]] = field(default_factory=list)
    latency: dict[str, Any] | None = None
    errprop: dict[str, Any] | None = None
    diversity: dict[str, Any] | None = None  # diversity.json (its sweeps' per-image values: matched quality)
    finished: float | None = None  # POSIX time the job ended (from its own files, never the clock)
    job: dict[str, Any] = field(default_factory=dict)  # job.json: the job's settings and weights

    @classmethod
    def load(cls, job_dir: Path, result: dict[str, Any]) -> Run:
        worker = _read(job_dir / files.WORKER) or {}
        finished = None
        if "started" in worker and "seconds" in result:
            finished = float(worker["started"]) + float(result["seconds"])
        elif (job_dir / files.RESULT).is_file():
            finished = (job_dir / files.RESULT).stat().st_mtime
        return cls(result=result, scores=_read(job_dir / files.SCORES), sweep=_read(job_dir / files.SWEEP) or [],
                   latency=_read(job_dir / files.LATENCY), errprop=_read(job_dir / files.ERRPROP),
                   diversity=_read(job_dir / files.DIVERSITY),
                   finished=finished, job=_read(job_dir / files.JOB) or {})

    def corpus(self, metric: str) -> float | None:
        """The corpus score (fraction, not x100) of `metric`, or None when not measured."""
        if self.scores and metric in self.scores.get("corpus", {}):
            return float(self.scores["corpus"][metric])
        value = self.result.get("metrics", {}).get(metric)
        return None if value is None else float(value)

    def interval(self, metric: str) -> tuple[float, float] | None:
        iv = (self.scores or {}).get("intervals", {}).get(metric)
        return (float(iv["low"]), float(iv["high"])) if iv else None


@dataclass
class Entry:
    """One model (label) on one task, all of its seeds."""

    label: str
    model: str
    task: str
    paradigm: str
    parameters: int
    order: int
    runs: list[Run]
    aggregate: dict[str, Any] | None = None  # this model's row of seeds.json, when it covers these seeds

    @property
    def seeds(self) -> list[int]:
        return sorted({int(r.result.get("seed", 0)) for r in self.runs})

    @property
    def model_info(self) -> dict[str, Any]:
        """The captioner's self-description recorded in result.json (`Captioner.describe`: knobs,
        probes, pre-training); {} for results written before it was recorded."""
        for run in self.runs:
            info = run.result.get("model_info")
            if isinstance(info, dict):
                return info
        return {}

    @property
    def pretraining(self) -> str:
        """The pre-training data the variant declares (its VariantInfo), 'unknown' when not recorded."""
        return str(self.model_info.get("pretraining") or "unknown")

    def knob_label(self, name: str) -> str:
        """A knob's axis label as the captioner declares it (the name when not recorded)."""
        for knob in self.model_info.get("knobs", []):
            if knob.get("name") == name:
                return str(knob.get("label") or name)
        return name

    def cost_knobs(self) -> list[str]:
        """The knobs the captioner declares as changing the decoding cost; for results written before
        declarations were recorded, the knobs its latency phase swept."""
        if self.model_info:
            return [k["name"] for k in self.model_info.get("knobs", []) if k.get("cost")]
        from bench.phases.latency import LENGTH

        names = [n for run in self.runs if run.latency for n in run.latency.get("sweeps", {})]
        return list(dict.fromkeys(n for n in names if n != LENGTH))

    def metric(self, name: str) -> tuple[float, float | None, float | None] | None:
        """(point, low, high) as fractions: the mean over seeds and its interval, or None if not measured.

        The interval is seeds.json's two-level bootstrap (test images and seeds); with one seed and no
        seeds.json, the eval phase's interval over images (the same thing for one seed); with several
        seeds and no seeds.json, none: averaging per-seed bounds would ignore the spread between seeds.
        """
        points = [p for p in (r.corpus(name) for r in self.runs) if p is not None]
        if not points:
            return None
        agg = (self.aggregate or {}).get("metrics", {}).get(name)
        if agg is not None and len(points) == len(self.runs):
            return float(agg["mean"]), float(agg["low"]), float(agg["high"])
        if len(self.runs) == 1:
            bounds = self.runs[0].interval(name)
            return (points[0], *bounds) if bounds else (points[0], None, None)
        return statistics.fmean(points), None, None

    def spread(self, name: str) -> float | None:
        """Standard deviation over seeds (fraction), when there are several seeds."""
        points = [p for p in (r.corpus(name) for r in self.runs) if p is not None]
        return statistics.stdev(points) if len(points) > 1 else None

    @property
    def two_level(self) -> bool:
        """Whether the intervals come from the two-level bootstrap of seeds.json."""
        return self.aggregate is not None

    def unavailable(self, name: str) -> str | None:
        """Why `name` was not measured (first run that says so), else None."""
        for run in self.runs:
            reason = (run.scores or {}).get("unavailable", {}).get(name)
            if reason:
                return str(reason)
        return None


def load_entries(suite_dir: Path, results: list[dict[str, Any]]) -> tuple[list[Entry], list[dict[str, Any]]]:
    """Group the `ok` and `partial` results by (task, label) into entries (suite order, then label); also
    the failed ones."""
    groups: dict[tuple[str, str], list[tuple[dict[str, Any], Run]]] = {}
    failed = []
    for result in sorted(results, key=lambda r: (str(r.get("job_id", "")), int(r.get("seed", 0)))):
        if result.get("status") not in ("ok", "partial"):
            failed.append(result)
            continue
        run = Run.load(suite_dir / str(result.get("job_id", "")), result)
        groups.setdefault((str(result.get("task", "")), str(result.get("label", ""))), []).append((result, run))
    from bench.derived import usable

    aggregates = (_read(suite_dir / files.SEEDS) if usable(suite_dir, files.SEEDS, results) else None) or {}
    rows = {(str(r.get("task")), str(r.get("model"))): r for r in aggregates.get("models", [])}
    entries = []
    for (task, label), members in groups.items():
        first = members[0][0]
        entries.append(Entry(label=label, model=str(first.get("model", label)), task=task,
                             paradigm=str(first.get("paradigm", "")), parameters=int(first.get("parameters", 0)),
                             order=min(int(r.get("order", 0)) for r, _ in members),
                             runs=sorted((run for _, run in members), key=lambda x: int(x.result.get("seed", 0)))))
        row = rows.get((task, label))
        if row is not None and sorted(row.get("seeds", [])) == entries[-1].seeds:  # a stale file is ignored
            entries[-1].aggregate = row
    entries.sort(key=lambda e: (e.task, e.order, e.label))
    return entries, failed


@dataclass(frozen=True)
class Published:
    """The committed file of reported (not measured) numbers."""

    task: str
    split: str
    rows: list[dict[str, Any]]  # model, paradigm, pretraining, source, metrics (x100)
    path: Path


def load_published(path: Path) -> Published:
    """Read results/reference/published.yaml; refuses a file that does not mark itself `kind: reported`."""
    import yaml

    data = yaml.safe_load(path.read_text())
    if data.get("kind") != "reported":
        raise ValueError(f"{path}: expected `kind: reported` (published numbers are never measured ones)")
    rows = data.get("rows") or []
    for row in rows:
        unknown = set(row.get("metrics", {})) - set(METRICS)
        if unknown:
            raise ValueError(f"{path}: row {row.get('model')!r} has unknown metrics {sorted(unknown)}")
    return Published(task=str(data["task"]), split=str(data.get("split", "")), rows=rows, path=path)
