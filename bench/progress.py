"""The driver's console: a live view of the suite's jobs (tqdm), and each note once per run.

On a terminal, one progress bar counts the jobs to run, with finished / failed counts, the job that
ended last and tqdm's estimate of the time left; the lines the driver prints pass above it. Without a
terminal (a log file, CI) there is no bar, only the driver's lines. Worker output goes to each job's
log.txt; `bench run --verbose` shows Ray workers' lines on the console too (bench/executors/ray.py).

A note that every job would repeat (SPICE unavailable, with the jar folder) is printed the first time
a job reports it, not once per job.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from bench import files


class SuiteProgress:
    """Counts the jobs of one run as their results arrive; prints through `echo` (or above the bar)."""

    def __init__(self, total: int, echo: Callable[[str], None], live: bool | None = None):
        self.total, self.ok, self.failed = total, 0, 0
        self._echo = echo
        self.notes: set[str] = set()
        live = sys.stderr.isatty() if live is None else live
        self.bar = None
        if live and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="jobs", unit="job", dynamic_ncols=True, leave=False,
                            bar_format="{desc} {n_fmt}/{total_fmt} |{bar}| {postfix} [{elapsed}<{remaining}]")
            self._postfix("starting")

    def echo(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message)
        else:
            self._echo(message)

    def _postfix(self, last: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.ok} ok, {self.failed} failed; last: {last}")

    def job_done(self, job, result: dict[str, Any]) -> None:
        """Count one ended job and print the notes of its scores not printed yet this run."""
        if result.get("status") == "ok":
            self.ok += 1
        else:
            self.failed += 1
        for metric, reason in _unavailable(job).items():
            note = f"{metric} unavailable: {reason}"
            if note not in self.notes:
                self.notes.add(note)
                self.echo(f"note: {note} (said once per run; each job's log.txt has it)")
        if self.bar is not None:
            self._postfix(f"{job.label} s{job.seed} {result.get('status', '?')}")
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _unavailable(job) -> dict[str, str]:
    """The metrics a job's scores.json says could not be computed, with why (empty when none or no file)."""
    try:
        scores = json.loads((job.dir / files.SCORES).read_text())
    except (OSError, ValueError):
        return {}
    found = scores.get("unavailable") if isinstance(scores, dict) else None
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}
