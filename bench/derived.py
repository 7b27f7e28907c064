"""What the suite's derived files were made from, so none of them outlives its inputs.

summary.*, seeds.*, comparisons.* and report/ are made from the jobs' result files. `derived.json` in the
suite folder records, for each derived file, the job set it came from (every job's result.json with its
SHA-256 digest; result.json holds its outputs' digests), and the invocation that made it. Before comparisons are recomputed the old ones
are removed, so a failing step leaves no stale file; a reader (the report) uses seeds.json and
comparisons.json only where `current` says they were made from the result files on disk now.

A job's own output files are checked too (`damaged`): result.json records the digest of each output
(`outputs`), and a job whose outputs are unreadable or changed is not finished: it is redone.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path
from typing import Any

from bench import files

MANIFEST = files.DERIVED
#: A job's outputs that derived files read (and whose damage makes the job unfinished).
OUTPUTS = (files.CAPTIONS, files.SCORES, files.SWEEP, files.LATENCY, files.ERRPROP, files.DIVERSITY,
           files.TRAIN)
#: The files of the paired comparisons step (bench/compare.py), removed before it runs again.
COMPARISON_FILES = tuple(f"{stem}.{ext}" for stem in ("seeds", "comparisons") for ext in ("json", "csv", "md"))
_invocation = ["python API"]


def set_invocation(argv: list[str]) -> None:
    """Name the command line that derived files will say they came from (bench/cli.py)."""
    _invocation[0] = "bench " + shlex.join(argv)


def invocation() -> str:
    return _invocation[0]


def digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def output_digests(job_dir: Path) -> dict[str, str]:
    """name -> SHA-256 of each output file the job has (for its result.json)."""
    return {name: d for name in OUTPUTS if (d := digest(job_dir / name)) is not None}


def damaged(job_dir: Path, result: dict[str, Any]) -> list[str]:
    """The job's output files that are unreadable JSON or differ from the digest result.json recorded."""
    recorded = result.get("outputs") or {}
    bad = []
    for name in OUTPUTS:
        path = job_dir / name
        if name in recorded:
            if digest(path) != recorded[name]:
                bad.append(name)
        elif path.is_file():
            try:
                json.loads(path.read_text())
            except (OSError, ValueError):
                bad.append(name)
    return bad


def job_set(suite_dir: Path, results: list[dict[str, Any]]) -> dict[str, Any]:
    """The jobs of `results` with the digest of each one's result.json, and one digest of the whole set.

    result.json holds the digests of the job's outputs (`outputs`), so its own digest stands for them
    all as long as they match it (`damaged`, checked by `current`): cheap enough for every summary.
    """
    jobs = {str(r.get("job_id")): digest(suite_dir / str(r.get("job_id")) / files.RESULT)
            for r in sorted(results, key=lambda r: str(r.get("job_id")))}
    text = json.dumps(jobs, sort_keys=True)
    return {"digest": hashlib.sha256(text.encode()).hexdigest()[:16], "jobs": jobs}


def _manifest(suite_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((suite_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record(suite_dir: Path, names: list[str], made_from: dict[str, Any]) -> None:
    """Note that the derived files `names` (relative to the suite folder) were made from `made_from`."""
    from bench.results import write_json

    data = _manifest(suite_dir)
    sets = data.setdefault("job_sets", {})
    sets[made_from["digest"]] = {"jobs": made_from["jobs"]}
    entries = data.setdefault("files", {})
    for name in names:
        entries[name] = {"job_set": made_from["digest"], "jobs": len(made_from["jobs"]),
                         "invocation": invocation()}
    used = {e["job_set"] for e in entries.values()}
    data["job_sets"] = {k: v for k, v in sets.items() if k in used}
    write_json(suite_dir / MANIFEST, data)


def discard(suite_dir: Path, names: tuple[str, ...] = COMPARISON_FILES) -> None:
    """Remove derived files before they are made again (a failure then leaves none, not stale ones)."""
    data = _manifest(suite_dir)
    for name in names:
        (suite_dir / name).unlink(missing_ok=True)
        data.get("files", {}).pop(name, None)
    if data:
        from bench.results import write_json

        write_json(suite_dir / MANIFEST, data)


def current(suite_dir: Path, name: str, results: list[dict[str, Any]]) -> bool:
    """Whether the derived file `name` was made from exactly these results' files as they are now."""
    entry = _manifest(suite_dir).get("files", {}).get(name)
    if not entry or not (suite_dir / name).is_file():
        return False
    return entry["job_set"] == job_set(suite_dir, results)["digest"] and not any(
        damaged(suite_dir / str(r.get("job_id")), r) for r in results)


def describe(made_from: dict[str, Any]) -> str:
    """One line naming the job set and the invocation, for the summary and the report."""
    return f"{len(made_from['jobs'])} job(s), set {made_from['digest']}, made by `{invocation()}`"


def usable(suite_dir: Path, name: str, results: list[dict[str, Any]]) -> bool:
    """Whether a reader may use derived file `name`: made from these results as they are now, or from a
    folder that predates this record (no derived.json at all)."""
    if not (suite_dir / MANIFEST).is_file():
        return True
    return current(suite_dir, name, results)


def repair(job_dir: Path) -> list[str]:
    """Remove the damaged outputs of a job that is to be redone, so its phases make them again; returns
    their names. Damaged captions take the scores made from them along."""
    try:
        result = json.loads((job_dir / files.RESULT).read_text())
    except (OSError, ValueError):
        result = {}
    bad = damaged(job_dir, result if isinstance(result, dict) else {})
    if files.CAPTIONS in bad and files.SCORES not in bad:
        bad.append(files.SCORES)
    for name in bad:
        (job_dir / name).unlink(missing_ok=True)
    return bad


def report_files(suite_dir: Path) -> tuple[str, ...]:
    """The report files derived.json knows of (removed before the report is made again)."""
    return tuple(n for n in _manifest(suite_dir).get("files", {}) if n.startswith("report/"))
