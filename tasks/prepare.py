"""`bench data prepare`: arrange downloaded archives or folders into a published dataset's layout.

`prepare` returns a report object (for tests and scripts) and `format_prepare` renders it for the CLI.
Nothing is downloaded: it extracts or links files the user already has, and lists what is still missing
with where it is published.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tasks.checks import configured
from tasks.karpathy import DatasetError, PublishedKarpathyTask, Source

MODES = ("symlink", "copy", "move")


@dataclass
class PrepareAction:
    item: str
    source: str
    action: str  # extracted | symlinked | copied | moved | present
    target: Path


@dataclass
class PrepareReport:
    task: str
    root: Path
    actions: list[PrepareAction]
    still_missing: list[Source]
    unused: list[str]  # sources in which nothing of the layout was found

    @property
    def exit_code(self) -> int:
        return 0 if not self.still_missing else 1


def layout_of(name: str, config: str | Path | None = "bench.yaml",
              ) -> tuple[type[PublishedKarpathyTask], dict]:
    """The published-task class behind `name` (coco, flickr30k, or a bench.yaml alias of one) and its
    bench.yaml options."""
    cls, options = configured(name, config)
    if not (isinstance(cls, type) and issubclass(cls, PublishedKarpathyTask)):
        raise DatasetError(f"task {name!r} has no known layout to prepare; `bench data prepare` knows the "
                           f"published sets (coco, flickr30k). Arrange other sets by hand and configure "
                           f"tasks.{name}.split_file and image_root.")
    return cls, options


def _matches(part: str, source: Source) -> bool:
    return part == source.item or part in source.aliases


def _archive_members(path: Path) -> Iterator[tuple[str, Callable[[], IO[bytes]]]]:
    """(member path, opener) of every regular file in a zip or tar archive, in archive order."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.is_dir():
                    yield info.filename, lambda info=info: archive.open(info)
    else:
        with tarfile.open(path, "r|*") as archive:  # a stream: one pass over a .tar.gz, no seeking back
            for member in archive:
                if member.isfile():
                    yield member.name, lambda member=member: archive.extractfile(member)


def _place_in_archive(name: str, layout: tuple[Source, ...]) -> tuple[Source, Path] | None:
    """Which layout item an archive member belongs to, and its path inside that item."""
    parts = [p for p in Path(name).parts if p not in ("", ".")]
    if not parts or ".." in parts or Path(name).is_absolute() or "__MACOSX" in parts:
        return None  # never write outside the root; skip macOS resource forks
    for source in layout:
        if not source.folder and parts[-1] == source.item:
            return source, Path()
        if source.folder:  # the innermost match: some mirrors nest flickr30k_images/flickr30k_images/
            for i in reversed(range(len(parts) - 1)):
                if _matches(parts[i], source):
                    return source, Path(*parts[i + 1:])
    return None


def _extract(path: Path, layout: tuple[Source, ...], root: Path, wanted: set[str]) -> list[str]:
    """Extract the members of the wanted layout items from an archive; returns the items placed."""
    stages: dict[str, Path] = {}
    # Extract beside the targets, rename into place only when complete: an interrupted prepare leaves
    # no half folder that would pass for the real one.
    scratch = Path(tempfile.mkdtemp(prefix=".prepare-partial-", dir=root))
    try:
        for name, opener in _archive_members(path):
            placed = _place_in_archive(name, layout)
            if placed is None or placed[0].item not in wanted:
                continue
            source, inner = placed
            stage = stages.setdefault(source.item, scratch / source.item)
            target = stage / inner if source.folder else stage
            target.parent.mkdir(parents=True, exist_ok=True)
            with opener() as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        for item, stage in stages.items():
            os.replace(stage, root / item)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return sorted(stages)


def _transfer(src: Path, target: Path, mode: str) -> None:
    if mode == "symlink":
        target.symlink_to(src.resolve(), target_is_directory=src.is_dir())
    elif mode == "move":
        shutil.move(str(src), str(target))
    elif src.is_dir():
        shutil.copytree(src, target, symlinks=True)
    else:
        shutil.copy2(src, target)


def _find_in_folder(folder: Path, layout: tuple[Source, ...], depth: int = 2) -> dict[str, Path]:
    """Layout items found as the folder itself or up to `depth` levels below it."""
    def match(name: str, is_dir: bool) -> Source | None:
        return next((s for s in layout if _matches(name, s) and s.folder == is_dir), None)

    own = match(folder.name, True)
    if own is not None:  # e.g. ~/Downloads/train2014: do not list its 82k files
        while (folder / folder.name).is_dir():  # some mirrors nest the folder in itself
            folder = folder / folder.name
        return {own.item: folder}
    found: dict[str, Path] = {}
    level = [folder]
    for _ in range(depth):
        below = []
        for parent in level:
            with os.scandir(parent) as entries:  # d_type, not a stat per entry
                for entry in sorted(entries, key=lambda e: e.name):
                    is_dir = entry.is_dir()
                    source = match(entry.name, is_dir)
                    if source is not None:
                        found.setdefault(source.item, Path(entry.path))
                    elif is_dir and not entry.is_symlink():
                        below.append(Path(entry.path))
        level = below
    return found


def prepare(name: str, root: str | Path | None, sources: list[str | Path], mode: str = "symlink",
            config: str | Path | None = "bench.yaml",
            echo: Callable[[str], None] = lambda _: None) -> PrepareReport:
    """Arrange downloaded archives (zip/tar) or folders into `name`'s layout under `root`.

    Archives are extracted (only the members of the layout); folders and plain files are symlinked
    (default), copied or moved. Items already under the root are kept. `root` defaults to the task's
    root in bench.yaml, else its environment variable.
    """
    if mode not in MODES:
        raise DatasetError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    cls, options = layout_of(name, config)
    layout = cls.layout_sources
    root = root or options.get("root") or os.environ.get(cls.env_var)
    if not root:
        raise DatasetError(f"give --root (or tasks.{name}.root in bench.yaml, or {cls.env_var}) for where "
                           f"{name} should live")
    root = Path(os.path.expandvars(str(root))).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    actions = [PrepareAction(s.item, str(root / s.item), "present", root / s.item)
               for s in layout if (root / s.item).exists()]
    unused: list[str] = []
    verbs = {"symlink": "symlinked", "copy": "copied", "move": "moved"}
    for raw in sources:
        path = Path(raw).expanduser()
        if not path.exists():
            raise DatasetError(f"source not found: {path}")
        wanted = {s.item for s in layout} - {a.item for a in actions}
        if not wanted:
            echo(f"layout complete; {path} not needed")
            continue
        if path.is_dir() or not (zipfile.is_zipfile(path) or tarfile.is_tarfile(path)):
            found = _find_in_folder(path, layout) if path.is_dir() else \
                {s.item: path for s in layout if not s.folder and path.name == s.item}
            for item, src in found.items():
                if item in wanted:
                    echo(f"{item}: {mode} {src}")
                    _transfer(src, root / item, mode)
                    actions.append(PrepareAction(item, str(src), verbs[mode], root / item))
        else:
            echo(f"extracting from {path}")
            found = dict.fromkeys(_extract(path, layout, root, wanted))
            actions += [PrepareAction(item, str(path), "extracted", root / item) for item in found]
        if not found:
            unused.append(str(path))
    have = {a.item for a in actions}
    return PrepareReport(name, root, actions, [s for s in layout if s.item not in have], unused)


def format_prepare(report: PrepareReport) -> str:
    lines = [f"{report.task} under {report.root}:"]
    lines += [f"  {a.item:<24} {a.action:<9} {a.source if a.action != 'present' else ''}".rstrip()
              for a in report.actions]
    for path in report.unused:
        lines.append(f"  nothing of the {report.task} layout found in {path}")
    if report.still_missing:
        lines.append("still missing (download them, then run prepare again with the files):")
        lines += [f"  {s.item + ('/' if s.folder else ''):<24} {s.url}" + (f"  ({s.note})" if s.note else "")
                  for s in report.still_missing]
    else:
        lines.append(f"layout complete; verify it with: bench data check --task {report.task} "
                     f"--root {report.root}")
    return "\n".join(lines)

