"""Expand a suite into jobs: (model variant, task, seed, phases), each with a content hash.

A job is names and numbers only (no tensors, no open files), so it pickles to any Ray worker. Its hash
covers everything that determines its result, and nothing that does not (not the Ray address, not the
label, not the resources), so a rerun finds the finished result and skips the job.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.api import stable_hash
from bench.config import BenchConfig, ConfigError, ModelSpec, SuiteConfig, TrainConfig

# Bump when the meaning of result files changes, so old results are not mistaken for new ones.
RESULT_SCHEMA = 1


@dataclass(frozen=True)
class Job:
    suite: str
    model: str  # registered captioner name
    label: str  # display name in tables
    task: str  # task name as the suite names it
    task_class: str  # registered task class it resolves to
    task_options: dict[str, Any]
    seed: int
    phases: tuple[str, ...]
    overrides: dict[str, Any]
    train: dict[str, Any]
    eval: dict[str, Any]
    decoding: dict[str, Any]
    sweep: dict[str, list[Any]]
    latency: dict[str, Any]
    errprop: dict[str, Any]
    cpus: float
    gpus: float
    results_dir: str
    extra: dict[str, Any] = field(default_factory=dict)
    # Data-parallel processes (Ray Train) sharing `cpus` and `gpus`; not in the identity: 1 worker and
    # N workers give the same result (bench/train.py), so a rerun with another count finds it.
    workers: int = 1
    diversity: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        """What determines the result: the hash input."""
        return {
            "schema": RESULT_SCHEMA, "model": self.model, "overrides": self.overrides,
            "task": self.task_class, "task_options": self.task_options, "seed": self.seed,
            "phases": list(self.phases), "train": self.train if "train" in self.phases else None,
            "eval": self.eval, "decoding": self.decoding, "sweep": self.sweep,
            "latency": self.latency if "latency" in self.phases else None,
            "errprop": self.errprop if "errprop" in self.phases else None,
            # only where the phase runs, so the keys of jobs without it stay what they were
            **({"diversity": self.diversity} if "diversity" in self.phases else {}),
        }

    @property
    def key(self) -> str:
        return stable_hash(self.identity())

    @property
    def job_id(self) -> str:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{self.label}__{self.task}__seed{self.seed}")
        return f"{slug}__{self.key}"

    @property
    def dir(self) -> Path:
        return Path(self.results_dir) / self.suite / self.job_id

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["phases"] = list(self.phases)
        out["key"] = self.key
        out["job_id"] = self.job_id
        return out


def _job(cfg: BenchConfig, suite_name: str, suite: SuiteConfig, spec: ModelSpec, task: str,
         seed: int) -> Job:
    task_class, task_options = cfg.task_options(task)
    train = TrainConfig.model_validate({**suite.train.model_dump(), **spec.train}).model_dump()
    resources = spec.resources or suite.resources
    decoding = dict(spec.decoding)
    sweep = decoding.pop("sweep", {}) or {}
    if not isinstance(sweep, dict) or not all(isinstance(v, list) for v in sweep.values()):
        raise ConfigError(f"suites.{suite_name}: decoding.sweep of {spec.name} must map knob -> list")
    return Job(
        suite=suite_name, model=spec.name, label=spec.display, task=task, task_class=task_class,
        task_options=task_options, seed=seed, phases=tuple(spec.phases or suite.phases),
        overrides=dict(spec.overrides), train=train, eval=suite.eval.model_dump(), decoding=decoding,
        sweep=sweep, latency=suite.latency.model_dump(),
        errprop=suite.errprop.model_dump(), cpus=resources.cpus, gpus=resources.gpus,
        workers=resources.num_workers, results_dir=str(cfg.results_dir),
        diversity=suite.diversity.model_dump(),
    )


def plan_suite(cfg: BenchConfig, suite_name: str, only: list[str] | None = None) -> list[Job]:
    """Jobs of a suite in a stable order (tasks, then models, then seeds). `only`: labels/names."""
    suite = cfg.suite(suite_name)
    jobs = [
        _job(cfg, suite_name, suite, spec, task, seed)
        for task in suite.tasks
        for spec in suite.models
        for seed in suite.seeds
    ]
    if only:
        wanted = set(only)
        jobs = [j for j in jobs if j.label in wanted or j.model in wanted]
        if not jobs:
            names = sorted({s.display for s in suite.models})
            raise ConfigError(f"--only {sorted(wanted)} matches no model of suite {suite_name!r}: {names}")
    labels = [(j.label, j.task, j.seed) for j in jobs]
    dupes = {x for x in labels if labels.count(x) > 1}
    if dupes:
        raise ConfigError(f"suite {suite_name!r} has duplicate rows {sorted(dupes)}: give them distinct labels")
    return jobs
