"""`bench reproduce JOB_DIR` / `--suite S`: run a finished job again and say whether it gives the same numbers.

The job is rebuilt from what it recorded (job.json: config, seed, the pretrained weights' identity) and
run in a scratch folder, in the numerics mode it ran in; the original folder is only read. Every metric
and every caption is compared (timings are listed apart: they measure the machine, not the model), and
where something differs, so are the recorded environments (bench/environment.py `differences`): the
fields that can explain it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import files
from bench.config import ConfigError

#: Metrics that time the machine (never compared: a rerun is not expected to take the same seconds).
TIMING = re.compile(r"latency|seconds|throughput|per_s\b|_ms\b")
SHOWN_CAPTIONS = 3


@dataclass
class Outcome:
    """What a rerun of one job found."""

    job_dir: Path
    metrics: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # metric -> (original, rerun)
    captions: list[tuple[Any, str | None, str | None]] = field(default_factory=list)  # (image, orig, rerun)
    captions_differing: int = 0
    environment: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    weights: dict[str, tuple[str, str]] = field(default_factory=dict)  # role -> (recorded, now)
    status: tuple[str, str] = ("ok", "ok")

    @property
    def identical(self) -> bool:
        return not (self.metrics or self.captions_differing or self.weights or self.status[0] != self.status[1])

    def text(self) -> str:
        if self.identical:
            return f"{self.job_dir.name}: identical"
        lines = [f"{self.job_dir.name}: DIFFERENT"]
        if self.status[0] != self.status[1]:
            lines.append(f"  status: {self.status[0]} -> {self.status[1]}")
        for role, (then, now) in self.weights.items():
            lines.append(f"  weights {role}: recorded {then}, now {now}")
        for name, (a, b) in self.metrics.items():
            lines.append(f"  metric {name}: {a!r} -> {b!r}")
        if self.captions_differing:
            lines.append(f"  captions: {self.captions_differing} differ; first ones:")
            lines += [f"    image {i}: {a!r} -> {b!r}" for i, a, b in self.captions]
        if self.environment:
            lines.append("  recorded environment differs in:")
            lines += [f"    {name}: {a!r} -> {b!r}" for name, (a, b) in self.environment.items()]
        return "\n".join(lines)


def load_job(job_dir: Path):
    """The Job a folder's job.json describes (raises ConfigError naming the file when it cannot)."""
    from bench.plan import Job

    path = job_dir / files.JOB
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the job's settings ({err}); is {job_dir} a job folder?") from None
    known = {f.name for f in dataclasses.fields(Job)}
    job = Job(**{k: v for k, v in data.items() if k in known})
    return dataclasses.replace(job, phases=tuple(job.phases))


def compare_metrics(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
            if not TIMING.search(k) and a.get(k) != b.get(k)}


def compare_captions(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> tuple[int, list]:
    """(how many images' captions differ, the first few as (image, original, rerun))."""
    first = {r["image_id"]: r["caption"] for r in a}
    second = {r["image_id"]: r["caption"] for r in b}
    differ = [(i, first.get(i), second.get(i)) for i in sorted(set(first) | set(second), key=str)
              if first.get(i) != second.get(i)]
    return len(differ), differ[:SHOWN_CAPTIONS]


def _read(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def reproduce_job(job_dir: Path, scratch: Path | None = None, echo: Callable[[str], None] = print) -> Outcome:
    """Rerun the job of `job_dir` under `scratch` (a new temporary folder by default, removed after)."""
    from bench.environment import differences
    from bench.executors import execute
    from bench.plan import pretrained_weights

    job_dir = Path(job_dir)
    original = _read(job_dir / files.RESULT)
    if not isinstance(original, dict) or original.get("status") not in ("ok", "partial"):
        raise ConfigError(f"{job_dir / files.RESULT}: no finished result to reproduce (run the job first)")
    job = load_job(job_dir)
    outcome = Outcome(job_dir)
    now = pretrained_weights(job.model, dict(job.overrides))
    outcome.weights = {role: (w["identity"], now.get(role, {}).get("identity", "absent"))
                       for role, w in job.weights.items() if now.get(role, {}).get("identity") != w["identity"]}
    own = scratch is None
    folder = Path(tempfile.mkdtemp(prefix="bench-reproduce-")) if own else Path(scratch)
    try:
        extra = {k: v for k, v in job.extra.items() if k not in ("defer", "latency_step_of")}
        rerun_job = dataclasses.replace(job, results_dir=str(folder), extra=extra)
        echo(f"rerunning {job.job_id} in {folder}")
        rerun = execute(rerun_job)
        outcome.status = (str(original.get("status")), str(rerun.get("status")))
        outcome.metrics = compare_metrics(original.get("metrics", {}), rerun.get("metrics", {}))
        outcome.captions_differing, outcome.captions = compare_captions(
            _read(job_dir / files.CAPTIONS) or [], _read(rerun_job.dir / files.CAPTIONS) or [])
        if not outcome.identical:
            outcome.environment = differences(original.get("environment") or {}, rerun.get("environment") or {})
    finally:
        if own:
            shutil.rmtree(folder, ignore_errors=True)
    return outcome


def recorded_mode(job_dir: Path) -> str:
    """The numerics mode a finished job ran in (reproducible where it recorded none)."""
    from bench.numerics import DEFAULT_MODE, MODES

    result = _read(Path(job_dir) / files.RESULT) if (Path(job_dir) / files.RESULT).is_file() else None
    mode = ((result or {}).get("environment") or {}).get("numerics", {}).get("mode")
    return mode if mode in MODES else DEFAULT_MODE


def sample(job_dirs: list[Path], n: int) -> list[Path]:
    """`n` of the folders, spread evenly over the list (the first and the last among them)."""
    if n >= len(job_dirs):
        return list(job_dirs)
    if n <= 1:
        return job_dirs[:1]
    step = (len(job_dirs) - 1) / (n - 1)
    return [job_dirs[round(i * step)] for i in range(n)]


def reproduce_command(args: Any) -> int:
    """`bench reproduce`: the parsed arguments of bench/cli.py; exit 1 when anything differs."""
    from bench.config import load_config
    from bench.numerics import apply

    if bool(args.job_dir) == bool(args.suite):
        raise ConfigError("bench reproduce: give either a job folder or --suite S")
    if args.job_dir:
        dirs = [Path(args.job_dir)]
    else:
        cfg = load_config(args.config, args.overrides)
        suite_dir = cfg.results_dir / args.suite
        dirs = sorted(p.parent for p in suite_dir.glob("*/result.json"))
        if not dirs:
            raise ConfigError(f"--suite {args.suite}: no finished job under {suite_dir}")
    mode = recorded_mode(dirs[0])
    apply(mode)  # the mode the jobs ran in, before torch loads
    if args.suite:
        from bench.plan import plan_suite
        from bench.results import finished

        keys = {job.job_id for job in plan_suite(cfg, args.suite)}
        dirs = sample([d for d in dirs if d.name in keys and finished(d) and recorded_mode(d) == mode], args.jobs)
    outcomes = [reproduce_job(d) for d in dirs]
    for outcome in outcomes:
        print(outcome.text())
    return 0 if all(o.identical for o in outcomes) else 1
