"""`bench data check` and `bench data prepare`: verify a Karpathy-format dataset, arrange downloaded files.

Both return a report object (for tests and scripts) and have a formatter (for the CLI). Neither downloads
anything: `prepare` arranges archives or folders the user already has; `check` says where each file is
published.

How thoroughly `check` reads images (`level`):
- "exists": one directory listing per image folder; no image is opened (seconds for COCO).
- "header" (default): also opens every image and runs PIL's `verify()`: catches empty, truncated-header,
  HTML-instead-of-JPEG and non-image files, and for PNG every chunk checksum; threads overlap the reads
  (about a minute for COCO's 123k images on a local disk). A JPEG cut off mid-stream passes it.
- "decode" (`--deep`): decodes every image fully, as training does; catches truncated JPEGs (minutes).
"""

from __future__ import annotations

import inspect
import os
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from bench.api import SPLITS
from tasks.karpathy import DatasetError, KarpathyTask, PublishedKarpathyTask, Source

LEVELS = ("exists", "header", "decode")
MODES = ("symlink", "copy", "move")


# -- building the task ------------------------------------------------------------------------


def _configured(name: str, config: str | Path | None) -> tuple[type, dict]:
    """(task class, options) of `name` as bench.yaml's `tasks:` section says, if the file exists."""
    from bench.registry import tasks

    kind, options = name, {}
    if config is not None and Path(config).is_file():
        from bench.config import load_config

        kind, options = load_config(config).task_options(name)
    return tasks.resolve(kind), options


def resolve_task(name: str, config: str | Path | None = "bench.yaml", root: str | None = None,
                 split_file: str | None = None, image_root: str | None = None) -> KarpathyTask:
    """The task `name` as a run would build it: bench.yaml's `tasks.<name>` options (if the config file
    exists), then the command-line paths on top. Raises DatasetError for a task without split files."""
    cls, options = _configured(name, config)
    if not (isinstance(cls, type) and issubclass(cls, KarpathyTask)):
        raise DatasetError(f"task {name!r} ({cls.__name__}) is not a Karpathy-format dataset; "
                           f"`bench data` handles coco, flickr30k and `type: karpathy` tasks")
    if root is not None:
        if not issubclass(cls, PublishedKarpathyTask):
            raise DatasetError(f"task {name!r} has no root layout: give --split-file and --image-root")
        # An explicit root replaces the configured location wholesale, not path by path.
        options = {k: v for k, v in options.items() if k not in ("root", "split_file", "image_root")}
        options["root"] = root
    if "name" in inspect.signature(cls).parameters:  # a `type: karpathy` set reports under its own name
        options.setdefault("name", name)
    if split_file is not None:
        options["split_file"] = split_file
    if image_root is not None:
        options["image_root"] = image_root
    try:
        return cls(**options)
    except TypeError as err:  # a wrong option name in bench.yaml
        raise DatasetError(f"tasks.{name} in {config}: {err}") from None


# -- check ------------------------------------------------------------------------------------


@dataclass
class SplitCheck:
    """What `check` found for one split. Image lists hold (image_id, path[, error]) for every problem."""

    split: str
    listed: int
    expected: int | None
    captions: int
    missing: list[tuple[str, str]] = field(default_factory=list)
    unreadable: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def count_ok(self) -> bool:
        return self.expected is None or self.listed == self.expected


@dataclass
class CheckReport:
    task: str
    split_file: Path
    image_root: Path
    level: str
    splits: dict[str, SplitCheck]
    absent_folders: list[str]
    sources: list[Source]
    remedy: str

    @property
    def problems(self) -> list[str]:
        out = [f"image folder not found: {f}" for f in self.absent_folders]
        for s in self.splits.values():
            if not s.count_ok:
                out.append(f"{s.split}: {s.listed:,} images listed, {s.expected:,} expected")
            if s.missing:
                out.append(f"{s.split}: {len(s.missing):,} image(s) missing")
            if s.unreadable:
                out.append(f"{s.split}: {len(s.unreadable):,} image(s) unreadable")
        return out

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1


def probe_image(path: Path, level: str = "header") -> str | None:
    """None if the image passes `level`, else the error as text."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if level == "decode":
                image.load()
            else:
                image.verify()
    except Exception as err:  # noqa: BLE001 - any failure to read is a finding, never a crash of the check
        return f"{type(err).__name__}: " + str(err).replace(f"'{path}'", "").replace(str(path), "").strip()
    return None


def check_task(task: KarpathyTask, level: str = "header", workers: int | None = None,
               progress: Callable[[int, int], None] | None = None) -> CheckReport:
    """Verify the split file, counts per split, and image presence/readability (see module docstring).

    Raises DatasetError when the data folder or split file is missing (nothing to count then).
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    expected = task.expected_for_check()
    splits: dict[str, SplitCheck] = {}
    to_probe: list[tuple[str, str, Path]] = []
    for split in SPLITS:
        listed, present = task.listed(split), task.present(split)
        check = SplitCheck(split, len(listed), expected.get(split), sum(len(s.references) for s in listed))
        if len(present) < len(listed):
            found = {id(s) for s in present}  # the same Sample objects: cheaper than hashing 123k paths
            check.missing = [(s.image_id, str(s.image_path)) for s in listed if id(s) not in found]
        splits[split] = check
        if level != "exists":
            to_probe += [(split, s.image_id, s.image_path) for s in present]
    workers = workers or min(16, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:  # PIL releases the GIL while reading/decoding
        results = pool.map(lambda item: probe_image(item[2], level), to_probe)
        for done, ((split, image_id, path), error) in enumerate(zip(to_probe, results, strict=True), 1):
            if error is not None:
                splits[split].unreadable.append((image_id, str(path), error))
            if progress is not None and (done % 1000 == 0 or done == len(to_probe)):
                progress(done, len(to_probe))
    return CheckReport(task.name, task.split_file, task.image_root, level, splits, task.absent_folders(),
                       task.sources(), task.remedy())


def stderr_progress(done: int, total: int) -> None:
    """A one-line counter for `check_task(progress=...)` on a terminal."""
    import sys

    end = "\n" if done == total else ""
    print(f"\rimages read: {done:,}/{total:,}", end=end, file=sys.stderr, flush=True)


def format_check(report: CheckReport, show: int = 5) -> str:
    """The check report as text: counts table, problems (first `show` of each list), sources, verdict."""
    lines = [f"{report.task}: split file {report.split_file}", f"  images under {report.image_root}",
             "", f"  {'split':<6} {'images':>9} {'expected':>9} {'captions':>9} {'missing':>8} "
             f"{'unreadable':>10}"]
    for s in report.splits.values():
        expected = "-" if s.expected is None else f"{s.expected:,}"
        unreadable = "-" if report.level == "exists" else f"{len(s.unreadable):,}"
        flag = "" if s.count_ok else "  <- count differs"
        lines.append(f"  {s.split:<6} {s.listed:>9,} {expected:>9} {s.captions:>9,} {len(s.missing):>8,} "
                     f"{unreadable:>10}{flag}")
    for folder in report.absent_folders:
        lines.append(f"\n  image folder not found: {folder}")
    missing = [(s.split, i, p) for s in report.splits.values() for i, p in s.missing]
    if missing:
        lines.append(f"\nmissing images ({len(missing):,}):")
        lines += [f"  {split:<5} {image_id:<14} {path}" for split, image_id, path in missing[:show]]
        if len(missing) > show:
            lines.append(f"  ... and {len(missing) - show:,} more")
    unreadable = [(s.split, *u) for s in report.splits.values() for u in s.unreadable]
    if unreadable:
        lines.append(f"\nunreadable images ({len(unreadable):,}):")
        lines += [f"  {split:<5} {image_id:<14} {path}: {error}"
                  for split, image_id, path, error in unreadable[:show]]
        if len(unreadable) > show:
            lines.append(f"  ... and {len(unreadable) - show:,} more")
    lines.append("\nimages read: " + {
        "exists": "existence only (run without --quick to open every image)",
        "header": "headers verified (a JPEG cut off mid-stream passes; --deep decodes every image)",
        "decode": "every image decoded"}[report.level])
    if report.sources:
        lines.append("where the files are published (the benchmark never downloads):")
        lines += [f"  {s.item + ('/' if s.folder else ''):<24} {s.url}" + (f"  ({s.note})" if s.note else "")
                  for s in report.sources]
    if report.ok:
        lines.append(f"\nOK: {report.task} is complete")
        return "\n".join(lines)
    lines.append(f"\n{len(report.problems)} problem(s):")
    lines += [f"  - {p}" for p in report.problems]
    lines.append("Runs stop on an absent image folder." if report.absent_folders else
                 "Runs skip missing and unreadable images (counted in each job's results).")
    if report.absent_folders or missing or unreadable:
        lines.append("Remedy: download what is missing (above), re-extract archives whose images are missing "
                     "or unreadable, and arrange them with `bench data prepare`." if report.sources else
                     "Remedy: check tasks.<name>.split_file / image_root, and re-copy the images listed.")
    elif any(not s.count_ok for s in report.splits.values()):
        lines.append(f"A different split file than the published one? For a custom set give "
                     f"tasks.{report.task}.expected: {{train: N, val: N, test: N}} in bench.yaml.")
    return "\n".join(lines)


# -- prepare ----------------------------------------------------------------------------------


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
    cls, options = _configured(name, config)
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

