"""Everything about a suite that needs the registry's classes, checked before any work.

bench/config.py checks the file's shape (keys, types, ranges) with pydantic alone, so `bench list` and
`bench --help` stay light. `validate_suite` is the second half, run by `bench run` and `bench report`
before any training, Ray start or report: it resolves the suite's captioners and tasks and checks what
only they can tell. Every failure is a `ConfigError` (exit 2) naming the key, the model or task, what
was found and what would be accepted, with a did-you-mean where a name is close.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from pathlib import Path
from typing import Any

from bench.config import BenchConfig, ConfigError, ModelSpec
from bench.plan import plan_suite

#: Phases that read the eval split (the others need the train split only).
_EVAL_PHASES = ("eval", "latency", "errprop", "diversity")


def validate_suite(cfg: BenchConfig, suite_name: str, data: bool = True, create_results: bool = True) -> None:
    """Check suite `suite_name` of `cfg` against the registered classes; raise ConfigError if wrong.

    - each model's `decoding` (and the knobs and values of `decoding.sweep`) against the captioner's
      declared knobs; its `overrides` against the fields of the captioner's config dataclass;
    - each task's options (bench.yaml `tasks.<name>`) against the task class's constructor;
    - labels that would share a job folder (bench/plan.py);
    - `results_dir` can be created (`create_results`);
    - with `data`: each task's files are there (a missing dataset root is reported once, here, before
      any executor starts) and the splits the suite reads are not empty.
    """
    suite = cfg.suite(suite_name)
    for i, spec in enumerate(suite.models):
        _check_model(f"suites.{suite_name}.models.{i}", spec)
        if "latency" in (spec.phases or suite.phases):
            _check_stack(f"suites.{suite_name}.latency", spec.name, suite.latency.dtype, suite.latency.stack)
    for name in suite.tasks:
        _check_task_options(cfg, name)
    plan_suite(cfg, suite_name)  # duplicate rows, labels sharing a folder, weights identities
    if create_results:
        _check_results_dir(cfg.results_dir, suite_name)
    if data:
        phases = {p for spec in suite.models for p in (spec.phases or suite.phases)}
        for name in suite.tasks:
            _check_splits(cfg, name, "train" in phases, suite.eval.split if phases & set(_EVAL_PHASES) else None)


def _close(value: str, accepted: list[str]) -> str:
    close = difflib.get_close_matches(value, accepted, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_model(where: str, spec: ModelSpec) -> None:
    from bench.registry import captioner_class

    cls = captioner_class(spec.name)
    fields = sorted(f.name for f in dataclasses.fields(cls.config_class) if f.name != "variant")
    for key in spec.overrides:
        if key not in fields:
            raise ConfigError(f"{where}.overrides.{key}: unknown field{_close(key, fields)} of {spec.name} "
                              f"({cls.config_class.__name__}); accepted: {', '.join(fields)}")
    try:
        cls.variant_config(spec.name, **spec.overrides)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}.overrides: {err}") from None
    decoding = dict(spec.decoding)
    sweep = decoding.pop("sweep", None) or {}
    _check_knobs(cls, spec.name, f"{where}.decoding", decoding)
    if not isinstance(sweep, dict) or not all(isinstance(v, list) and v for v in sweep.values()):
        raise ConfigError(f"{where}.decoding.sweep: expected a mapping knob -> non-empty list of values, "
                          f"e.g. {{steps: [1, 5, 10]}}; got {sweep!r}")
    for knob, values in sweep.items():
        for value in values:
            _check_knobs(cls, spec.name, f"{where}.decoding.sweep", {knob: value})


def _check_stack(where: str, model: str, dtype: str, stack: str) -> None:
    """latency.dtype / latency.stack against what the captioner declares (Captioner.check_stack)."""
    from bench.registry import captioner_class

    try:
        captioner_class(model).check_stack(dtype, stack)
    except ValueError as err:
        raise ConfigError(f"{where}: {err} (model {model!r})") from None


def _check_knobs(cls: Any, model: str, where: str, decoding: dict[str, Any]) -> None:
    try:
        cls.check_decoding(decoding, where=where)
    except ValueError as err:
        raise ConfigError(f"{err} (model {model!r})") from None


def _check_task_options(cfg: BenchConfig, name: str) -> None:
    from bench.registry import tasks

    kind, options = cfg.task_options(name)
    cls = tasks.resolve(kind)
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return  # the class takes any keyword: it checks its options itself
    accepted = sorted(n for n, p in params.items() if n != "self" and p.kind in
                      (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY))
    for key in options:
        if key not in accepted:
            raise ConfigError(f"tasks.{name}.{key}: unknown option{_close(key, accepted)} of task {kind!r}; "
                              f"accepted: {', '.join(accepted + ['type'])}")
    required = [n for n in accepted if params[n].default is inspect.Parameter.empty and n not in options]
    if required:
        raise ConfigError(f"tasks.{name}: task {kind!r} needs option(s) {', '.join(required)}")


def _check_results_dir(results_dir: Path, suite_name: str) -> None:
    target = results_dir / suite_name
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"results_dir: cannot create {target}: {err.strerror or err}; set results_dir "
                          "(or --set results_dir=PATH) to a writable folder") from None
    if not target.is_dir():
        raise ConfigError(f"results_dir: {target} exists and is not a folder")
    import tempfile

    try:  # an existing folder may still refuse writes (read-only mount, another user's folder)
        tempfile.TemporaryFile(dir=target).close()
    except OSError as err:
        raise ConfigError(f"results_dir: cannot write in {target}: {err.strerror or err}; set results_dir "
                          "(or --set results_dir=PATH) to a writable folder") from None


def _check_splits(cfg: BenchConfig, name: str, train: bool, eval_split: str | None) -> None:
    """Build the task once (a missing root raises its DatasetError here, once) and count the splits."""
    from bench.registry import create_task

    kind, options = cfg.task_options(name)
    task = create_task(kind, **options)
    for split in (["train"] if train else []) + ([eval_split] if eval_split else []):
        if not task.samples(split):
            listed = len(task.references(split))
            why = (f"its {listed} listed image(s) are all missing on disk" if listed
                   else "the split file lists no image for it")
            raise ConfigError(f"tasks.{name}: the {split} split is empty ({why}); the suite "
                              f"{'trains on' if split == 'train' else 'evaluates on'} it")
