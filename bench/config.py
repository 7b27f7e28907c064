"""bench.yaml -> typed, validated config. The one place where YAML becomes objects.

A bad file or `--set` override fails here, before any work, with a `ConfigError` naming the file, the
dotted key, what was found and what would be accepted.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from bench.config_phases import (  # noqa: F401 - the phase sections, re-exported
    CompareConfig,
    DiversityConfig,
    ErrpropConfig,
    EvalConfig,
    LatencyConfig,
    TrainConfig,
    _Strict,  # one base for every section
)

#: The phases a job may run, in the order they run. Adding one is an edit of this tuple alone: the
#: `Phase` type below (and so config validation and its error messages) is derived from it.
PHASES: tuple[str, ...] = ("train", "eval", "latency", "errprop", "diversity")
Phase = Literal[PHASES]  # type: ignore[valid-type]  # Literal of a tuple = Literal of its items


class ConfigError(ValueError):
    """Invalid configuration; the message is meant for the user as is (no traceback needed)."""


class Resources(_Strict):
    """What one job asks of the executor (Ray schedules on these): totals for the whole job.

    A job with more than one worker trains data-parallel under Ray Train: `workers` processes, each
    with `cpus / workers` CPUs and, when `gpus` > 0, one GPU of its own (so gpus = workers). A job
    asking for more than one GPU gets one worker per GPU unless `workers` says otherwise. CPU-only
    workers (gpus 0) use the gloo backend: the same path, testable without a GPU.
    """

    cpus: float = Field(1.0, gt=0, description="CPUs of the whole job (shared evenly by its workers)")
    gpus: float = Field(0.0, ge=0, description="GPUs of the whole job (more than 1: one worker each)")
    workers: int | None = Field(None, ge=1, description="data-parallel processes (None: one per GPU, "
                                                        "or 1 with at most one GPU)")

    @model_validator(mode="after")
    def _one_gpu_per_worker(self) -> Resources:
        if self.gpus > 1 and self.gpus != int(self.gpus):
            raise ValueError(f"gpus {self.gpus:g}: a job with more than one GPU runs one worker per GPU; "
                             "accepted: a fraction up to 1, or a whole number")
        if self.workers is not None and self.gpus > 0 and self.workers != max(1.0, self.gpus):
            raise ValueError(f"workers {self.workers} with gpus {self.gpus:g}: each worker has one GPU of "
                             f"its own; accepted: workers = gpus ({self.gpus:g}), or gpus: 0 for CPU workers")
        return self

    @property
    def num_workers(self) -> int:
        """The data-parallel worker count: `workers`, else one per GPU, else 1."""
        if self.workers is not None:
            return self.workers
        return int(self.gpus) if self.gpus > 1 else 1




class ModelSpec(_Strict):
    """One row of a suite: a registered captioner and how to train and decode it."""

    name: str
    label: str | None = Field(None, description="display name (default: name)")
    overrides: dict[str, Any] = Field(default_factory=dict, description="captioner config fields")
    train: dict[str, Any] = Field(default_factory=dict, description="overrides of the suite's train")
    decoding: dict[str, Any] = Field(default_factory=dict)
    phases: list[Phase] | None = None
    resources: Resources | None = None

    @property
    def display(self) -> str:
        return self.label or self.name


class SuiteConfig(_Strict):
    description: str = ""
    tasks: list[str] = Field(min_length=1)
    models: list[ModelSpec] = Field(min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    phases: list[Phase] = Field(default_factory=lambda: ["train", "eval"], min_length=1)
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    latency: LatencyConfig = LatencyConfig()
    errprop: ErrpropConfig = ErrpropConfig()
    diversity: DiversityConfig = DiversityConfig()
    compare: CompareConfig = CompareConfig()
    resources: Resources = Resources()
    phase_seeds: dict[Phase, list[int]] = Field(
        default_factory=dict,
        description="phase -> the seeds that run it (default: every seed). For probe phases whose cost "
                    "outweighs what more seeds add, e.g. latency (timing does not depend on the seed)")

    verdict_models: list[str] | None = Field(
        None, description="labels of the models the verdict compares (default: every learned model); the "
                          "main table and comparisons.json keep every model. E.g. a same-family pair")

    @model_validator(mode="after")
    def _verdict_models_are_models(self) -> SuiteConfig:
        if self.verdict_models is None:
            return self
        labels = [spec.display for spec in self.models]
        unknown = [v for v in self.verdict_models if v not in labels]
        if unknown:
            raise ValueError(f"verdict_models: {unknown} are not labels of this suite's models; accepted: {labels}")
        if len(set(self.verdict_models)) < 2:
            raise ValueError(f"verdict_models: a verdict compares at least two models; got {self.verdict_models}")
        return self

    @model_validator(mode="after")
    def _phase_seeds_are_seeds(self) -> SuiteConfig:
        for phase, seeds in self.phase_seeds.items():
            if phase in ("train", "eval"):
                raise ValueError(f"phase_seeds.{phase}: every seed trains and is evaluated (the seeds are "
                                 "the uncertainty the intervals measure); accepted: the later phases")
            extra = sorted(set(seeds) - set(self.seeds))
            if extra:
                raise ValueError(f"phase_seeds.{phase}: seed(s) {extra} are not among the suite's seeds "
                                 f"{self.seeds}")
        return self

    def phases_for(self, spec_phases: list[str] | None, seed: int) -> tuple[str, ...]:
        """The phases a job of this seed runs: the model's (or the suite's), less those whose
        `phase_seeds` leave this seed out."""
        return tuple(p for p in (spec_phases or self.phases)
                     if p not in self.phase_seeds or seed in self.phase_seeds[p])

    @model_validator(mode="after")
    def _model_train_overrides(self) -> SuiteConfig:
        for i, spec in enumerate(self.models):
            try:
                TrainConfig.model_validate({**self.train.model_dump(), **spec.train})
            except ValidationError as err:
                first = err.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise ValueError(f"models.{i}.train.{where}: {first['msg']}") from None
        return self

    @field_validator("models", mode="before")
    @classmethod
    def _names_as_models(cls, value: Any) -> Any:
        # `models: [constant, {name: vit-gpt2-mini, ...}]`: a bare name is a spec with defaults.
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value


class ExecutorConfig(_Strict):
    kind: Literal["ray", "local"] = "ray"
    address: str | None = Field(None, description="Ray address; None starts a local instance")
    max_retries: int = Field(1, ge=0, description="retries of a job whose worker died")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of a locally started Ray instance")


class TrackingConfig(_Strict):
    kind: Literal["mlflow", "none"] = "mlflow"
    uri: str = Field("sqlite:///results/mlflow.db", description="MLflow tracking URI")
    experiment: str = Field("diffcap-bench/{suite}", description="experiment name; {suite} expands")


class BenchConfig(_Strict):
    results_dir: Path = Path("results")
    # bench/numerics.py: reproducible pins the CPU kernel paths (AVX2) and deterministic algorithms;
    # fast lets each library take this machine's fastest path.
    numerics: Literal["reproducible", "fast"] = "reproducible"
    executor: ExecutorConfig = ExecutorConfig()
    tracking: TrackingConfig = TrackingConfig()
    tasks: dict[str, dict[str, Any]] = Field(default_factory=dict, description="task name -> options")
    suites: dict[str, SuiteConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _known_names(self) -> BenchConfig:
        from bench.registry import captioners, tasks

        for suite_name, suite in self.suites.items():
            for i, spec in enumerate(suite.models):
                if spec.name not in captioners:
                    raise ValueError(_unknown(f"suites.{suite_name}.models.{i}.name", spec.name,
                                              captioners.names()))
            for i, task in enumerate(suite.tasks):
                known = sorted(set(tasks.names()) | set(self.tasks))
                if task not in known:
                    raise ValueError(_unknown(f"suites.{suite_name}.tasks.{i}", task, known))
        return self

    def suite(self, name: str) -> SuiteConfig:
        if name not in self.suites:
            raise ConfigError(_unknown("--suite", name, sorted(self.suites)))
        return self.suites[name]

    def task_options(self, task: str) -> tuple[str, dict[str, Any]]:
        """(registered task class name, options) for a task named in a suite.

        A `tasks:` section entry may name its class with `type:` (e.g. flickr8k: {type: karpathy, ...}).
        """
        options = dict(self.tasks.get(task, {}))
        kind = options.pop("type", task)
        return kind, options


def _unknown(key: str, value: Any, allowed: list[str]) -> str:
    close = difflib.get_close_matches(str(value), allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{key}: unknown value {value!r}{hint}; accepted: {', '.join(allowed)}"


# -- loading ----------------------------------------------------------------------------------


def parse_override(text: str) -> tuple[list[str], Any]:
    """'a.b.0.c=value' -> (['a','b','0','c'], parsed value). Values are parsed as YAML scalars/lists."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. executor.kind=local")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {text!r}: value is not valid YAML ({err})") from err
    if re.search(r"\s#", raw) and not (isinstance(value, str) and "#" in value):
        # YAML read " #..." as a comment, which on a command line is part of the value (a path).
        if not isinstance(value, str):
            raise ConfigError(f"--set {text!r}: ' #' would start a YAML comment and drop the rest of the "
                              f"value; quote the value if the # belongs to it, e.g. {key}='\"...\"'")
        value = raw.strip()
    return key.strip().split("."), value


def apply_override(data: dict[str, Any], path: list[str], value: Any, source: str) -> None:
    node: Any = data
    for depth, part in enumerate(path[:-1]):
        where = ".".join(path[: depth + 1])
        if isinstance(node, list):
            node = node[_list_index(part, node, where, source)]
        elif isinstance(node, dict):
            node = node.setdefault(part, {})
        else:
            raise ConfigError(f"{source}: {where} is a {type(node).__name__}, not a section")
    last = path[-1]
    if isinstance(node, list):
        node[_list_index(last, node, ".".join(path), source)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"{source}: {'.'.join(path[:-1])} is not a section")


def _list_index(part: str, node: list[Any], where: str, source: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"{source}: {where}: expected a list index 0..{len(node) - 1}, got {part!r}")
    return int(part)


def load_config(path: str | Path = "bench.yaml", overrides: list[str] | tuple[str, ...] = ()) -> BenchConfig:
    """Read, override and validate. Every failure is a ConfigError naming the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} (pass --config PATH)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); save the file as "
                          "UTF-8") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config file: {err.strerror or err}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping with a 'suites' key")
    _expand_model_shorthand(data)
    for text in overrides:
        keys, value = parse_override(text)
        apply_override(data, keys, value, f"{path} (--set {text})")
    try:
        return BenchConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(path, err)) from None


def _expand_model_shorthand(data: dict[str, Any]) -> None:
    """`models: [constant]` -> `models: [{name: constant}]`, so `--set ...models.0.train.epochs=2` works."""
    suites = data.get("suites")
    if isinstance(suites, dict):
        for suite in suites.values():
            if isinstance(suite, dict) and isinstance(suite.get("models"), list):
                suite["models"] = [{"name": m} if isinstance(m, str) else m for m in suite["models"]]


def format_validation_error(path: Path, err: ValidationError) -> str:
    lines = [f"{path}: invalid configuration ({err.error_count()} problem(s))"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = f"unknown key; accepted keys here: {', '.join(_accepted_keys(e['loc']))}"
        got = e.get("input")
        shown = "" if e["type"] in ("extra_forbidden", "missing") or isinstance(got, dict | list) else \
            f" (got {got!r})"
        lines.append(f"  {key}: {msg}{shown}" if key else f"  {msg}")
    return "\n".join(lines)


def _accepted_keys(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model that owns the offending key (walks the schema along `loc`)."""
    model: Any = BenchConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:  # inside a dict of models (suites.<name>)
            continue
        model = _inner_model(field.annotation)
    return sorted(getattr(model, "model_fields", {}))


def _inner_model(annotation: Any) -> Any:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None
