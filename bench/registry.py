"""One generic registry for captioners and tasks, with lazy entries.

An entry is a name, a "module:attr" target and a one-line description. The target is imported only
when the entry is used, so listing every captioner costs no torch import. Built-in entries are declared
in `models/__init__.py` and `tasks/__init__.py`; third-party packages add theirs through the entry-point
groups `bench.captioners` and `bench.tasks`, whose entry points name a `register(registry)` callable or
directly a Captioner/Task class (registered under the entry point's name).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """An unknown name, or a target that cannot be imported. The message says what would be valid."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


@dataclass(frozen=True)
class Entry:
    name: str
    target: str  # "package.module:attribute"
    description: str
    paradigm: str = ""


class Registry(Generic[T]):
    """Maps names to lazily imported objects."""

    def __init__(self, kind: str, entry_point_group: str, builtin_module: str):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self.builtin_module = builtin_module
        self._entries: dict[str, Entry] = {}
        self._loaded = False

    def register(self, name: str, target: str, description: str, paradigm: str = "") -> None:
        if ":" not in target:
            raise ValueError(f"{self.kind} {name!r}: target {target!r} must look like 'module:attribute'")
        self._entries[name] = Entry(name, target, description, paradigm)

    def _load_entries(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        importlib.import_module(self.builtin_module)
        from importlib.metadata import entry_points

        for ep in entry_points(group=self.entry_point_group):
            obj = ep.load()
            if callable(obj) and not isinstance(obj, type):
                obj(self)  # a register(registry) hook
            else:
                doc = (obj.__doc__ or "").strip().splitlines()
                self.register(ep.name, ep.value, doc[0] if doc else "", getattr(obj, "paradigm", ""))

    def names(self) -> list[str]:
        self._load_entries()
        return sorted(self._entries)

    def entries(self) -> Iterator[Entry]:
        self._load_entries()
        for name in sorted(self._entries):
            yield self._entries[name]

    def entry(self, name: str) -> Entry:
        self._load_entries()
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise RegistryError(
                f"unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {', '.join(self.names())}"
            )
        return self._entries[name]

    def __contains__(self, name: str) -> bool:
        self._load_entries()
        return name in self._entries

    def resolve(self, name: str) -> Any:
        """Import and return the entry's target object."""
        entry = self.entry(name)
        module_name, _, attr = entry.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise RegistryError(
                f"{self.kind} {name!r} needs module {module_name!r}, which failed to import: {err}"
            ) from err
        try:
            return getattr(module, attr)
        except AttributeError as err:
            raise RegistryError(f"{self.kind} {name!r}: {module_name} has no attribute {attr!r}") from err


captioners: Registry[Any] = Registry("captioner", "bench.captioners", "models")
tasks: Registry[Any] = Registry("task", "bench.tasks", "tasks")


def create_captioner(name: str, /, **overrides: Any):
    """Build a registered captioner variant, e.g. `create_captioner("ladic-mini", steps=5)`."""
    cls = captioners.resolve(name)
    return cls.from_config(cls.variant_config(name, **overrides))


def captioner_class(name: str):
    return captioners.resolve(name)


def create_task(name: str, /, **options: Any):
    """Build a registered task; options come from bench.yaml's `tasks.<name>` section."""
    cls = tasks.resolve(name)
    return cls(**options)
