"""Expand a suite into jobs: (model variant, task, seed, phases), each with a content hash.

A job is names and numbers only (no tensors, no open files), so it pickles to any Ray worker. Its hash
covers everything that determines its result, and nothing that does not (not the Ray address, not the
label, not the resources, not the data-loader workers or CPU threads), so a rerun finds the finished
result and skips the job. The pretrained weights a job starts from are part of it: their identity
(models/weights.py `weights_identity`: a content fingerprint of the resolved directory, or the hub
revision in the Hugging Face cache) is in the hash, so swapping the weights under $BENCH_WEIGHTS_DIR
reruns the jobs that use them.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.api import stable_hash
from bench.config import BenchConfig, ConfigError, ModelSpec, SuiteConfig, TrainConfig

# Bump when the meaning of result files changes, so old results are not mistaken for new ones.
RESULT_SCHEMA = 2
#: Settings that cannot change a result (how fast data is loaded, how many CPU threads compute it):
#: left out of the hash, so a rerun with other loader settings finds the finished results.
NOT_IN_IDENTITY = {"train": ("num_workers", "threads"), "eval": ("num_workers",)}


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
    # Pretrained weights the job starts from: role -> {"source": as configured, "identity": fingerprint}.
    weights: dict[str, dict[str, str]] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        """What determines the result: the hash input (also logged as the job's MLflow params)."""
        return {
            "schema": RESULT_SCHEMA, "model": self.model, "overrides": self.overrides,
            "task": self.task_class, "task_options": self.task_options, "seed": self.seed,
            "phases": list(self.phases),
            "train": _without(self.train, "train") if "train" in self.phases else None,
            "eval": _without(self.eval, "eval"), "decoding": self.decoding, "sweep": self.sweep,
            "latency": _stack_if_chosen(self.latency) if "latency" in self.phases else None,
            "errprop": self.errprop if "errprop" in self.phases else None,
            # only where the phase runs, so the keys of jobs without it stay what they were
            **({"diversity": self.diversity} if "diversity" in self.phases else {}),
            "weights": {role: w["identity"] for role, w in sorted(self.weights.items())},
        }

    @property
    def key(self) -> str:
        return stable_hash(self.identity())

    @property
    def job_id(self) -> str:
        return f"{job_slug(self.label, self.task, self.seed)}__{self.key}"

    @property
    def dir(self) -> Path:
        return Path(self.results_dir) / self.suite / self.job_id

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["phases"] = list(self.phases)
        out["key"] = self.key
        out["job_id"] = self.job_id
        return out


#: Settings that join the identity only when set, so jobs that do not use them keep their keys.
ONLY_WHEN_SET = {"train": (), "eval": ("clip", "instances")}


def _without(settings: dict[str, Any], section: str) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k not in NOT_IN_IDENTITY[section]
            and not (k in ONLY_WHEN_SET[section] and not v)}


def _stack_if_chosen(latency: dict[str, Any]) -> dict[str, Any]:
    """The latency settings with dtype/stack left out at their defaults (fp32, eager), so the jobs of a
    suite that chooses no stack keep the keys they had before stacks were settings."""
    defaults = {"dtype": "fp32", "stack": "eager"}
    return {k: v for k, v in latency.items() if k not in defaults or v != defaults[k]}


def job_slug(label: str, task: str, seed: int) -> str:
    """The readable part of a job's folder name (the hash follows it)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{label}__{task}__seed{seed}")


def pretrained_weights(model: str, overrides: dict[str, Any]) -> dict[str, dict[str, str]]:
    """role -> {"source", "identity"} of the pretrained weights variant `model` with `overrides` loads.

    A config declares them with `weights_sources()` (role -> hub id or directory); a config with a
    `weights` field (BLIP, GIT) names one, role "model"; anything else loads none.
    """
    from bench.registry import captioner_class
    from models.weights import weights_identity

    cls = captioner_class(model)
    try:
        config = cls.variant_config(model, **overrides)
    except (TypeError, ValueError, KeyError):
        return {}  # bad overrides: bench/validate.py reports them; a job run anyway fails with them
    declared = getattr(config, "weights_sources", None)
    if callable(declared):
        sources = declared()
    else:
        weights = getattr(config, "weights", None)
        sources = {"model": weights} if isinstance(weights, str) and weights else {}
    return {role: {"source": str(src), "identity": weights_identity(str(src))}
            for role, src in sorted(sources.items())}


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
        task_options=task_options, seed=seed, phases=suite.phases_for(spec.phases, seed),
        overrides=dict(spec.overrides), train=train, eval=suite.eval.model_dump(), decoding=decoding,
        sweep=sweep, latency=suite.latency.model_dump(),
        errprop=suite.errprop.model_dump(), cpus=resources.cpus, gpus=resources.gpus,
        workers=resources.num_workers, results_dir=str(cfg.results_dir),
        diversity=suite.diversity.model_dump(),
        weights=pretrained_weights(spec.name, dict(spec.overrides)),
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
    _check_folder_names(suite_name, suite)
    return jobs


def _check_folder_names(suite_name: str, suite: SuiteConfig) -> None:
    """Distinct labels whose folder names coincide ("BLIP (a)" and "BLIP [a]" are both "BLIP-a-")
    would share job folders and summary rows: rejected, naming both."""
    seen: dict[str, tuple[int, str]] = {}
    for i, spec in enumerate(suite.models):
        slug = job_slug(spec.display, "", 0)
        other = seen.setdefault(slug, (i, spec.display))
        if other[1] != spec.display:
            raise ConfigError(
                f"suites.{suite_name}.models.{i}.label: {spec.display!r} and models.{other[0]} "
                f"({other[1]!r}) give the same folder name {slug.split('__')[0]!r}; labels may differ in "
                "letters, digits, '_', '.' and '-' only: make them differ there")
