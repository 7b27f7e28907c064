"""The driver's console: a live view of the suite's jobs (tqdm), and each note once per run.

On a terminal, one progress bar counts the jobs to run, with finished / failed counts, the job that
ended last and tqdm's estimate of the time left; below it, one line per running job with its phase and
its latest log line (epoch, loss, the training loop's own time left), refreshed every few seconds from
the job's folder (.phase, which the runner writes at each phase, and log.txt); the lines the driver
prints pass above it. Without a
terminal (a log file, CI) there is no bar, only the driver's lines. Worker output goes to each job's
log.txt; `bench run --verbose` shows Ray workers' lines on the console too (bench/executors/ray.py).

A note that every job would repeat (SPICE unavailable, with the jar folder) is printed the first time
a job reports it, not once per job.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from bench import files


class SuiteProgress:
    """Counts the jobs of one run as their results arrive; prints through `echo` (or above the bar)."""

    def __init__(self, total: int, echo: Callable[[str], None], live: bool | None = None,
                 jobs: Sequence[Any] = (), refresh: float = 2.0):
        self.total, self.ok, self.failed = total, 0, 0
        self._echo = echo
        self.notes: set[str] = set()
        self.jobs, self.done = list(jobs), set()
        live = sys.stderr.isatty() if live is None else live
        self.bar = None
        self.lines: list[Any] = []  # one tqdm line per running job shown
        self._stop = threading.Event()
        self._lock = threading.Lock()
        if live and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="jobs", unit="job", dynamic_ncols=True, leave=False,
                            bar_format="{desc} {n_fmt}/{total_fmt} |{bar}| [{elapsed}<{remaining}]{postfix}")
            self._postfix("starting")
            if self.jobs:
                threading.Thread(target=self._watch, args=(refresh,), daemon=True).start()

    def running(self, width: int = 100) -> list[str]:
        """One line per job that is running now: label, seed, phase and its latest log line."""
        out = []
        for job in self.jobs:
            if job.key in self.done:
                continue
            try:
                phase = (job.dir / files.PHASE).read_text().strip()
            except OSError:
                continue  # not started (or already ended)
            last = _last_line(job.dir / files.LOG)
            detail = last.split("] ", 1)[1] if "] " in last else last
            out.append(f"{job.label} s{job.seed} [{phase}] {detail}"[:width])
        return out

    def _watch(self, refresh: float) -> None:
        from tqdm import tqdm

        while not self._stop.wait(refresh):
            with self._lock:
                if self.bar is None:
                    return
                shown = self.running()
                while len(self.lines) < len(shown):
                    self.lines.append(tqdm(total=0, position=len(self.lines) + 1, leave=False, bar_format="{desc}"))
                for n, line in enumerate(self.lines):
                    line.set_description_str(("  " + shown[n]) if n < len(shown) else "", refresh=True)

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
        self.done.add(job.key)
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
        self._stop.set()
        with self._lock:
            for line in self.lines:
                line.close()
            self.lines = []
            if self.bar is not None:
                self.bar.close()
                self.bar = None


def _last_line(path) -> str:
    """The last non-empty line of a text file ("" when unreadable), reading only its end."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 4096))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


def _unavailable(job) -> dict[str, str]:
    """The metrics a job's scores.json says could not be computed, with why (empty when none or no file)."""
    try:
        scores = json.loads((job.dir / files.SCORES).read_text())
    except (OSError, ValueError):
        return {}
    found = scores.get("unavailable") if isinstance(scores, dict) else None
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}
