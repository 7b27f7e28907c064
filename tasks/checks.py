"""`bench data check`: verify a Karpathy-format dataset's split file, counts and images.

`check_task` returns a report object (for tests and scripts) and `format_check` renders it for the CLI.
Nothing is downloaded: the report says where each missing file is published (tasks/prepare.py arranges
files the user already has).

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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bench.api import SPLITS
from tasks.karpathy import DatasetError, KarpathyTask, PublishedKarpathyTask, Source

LEVELS = ("exists", "header", "decode")


def configured(name: str, config: str | Path | None) -> tuple[type, dict]:
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
    cls, options = configured(name, config)
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
    unreferenced: list[str] = field(default_factory=list)  # image ids whose references are all empty

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
            if s.unreferenced:
                out.append(f"{s.split}: {len(s.unreferenced):,} image(s) whose reference captions are all empty "
                           f"(nothing to score against), e.g. {', '.join(s.unreferenced[:3])}")
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
        check = SplitCheck(split, len(listed), expected.get(split), sum(len(s.references) for s in listed),
                           unreferenced=[s.image_id for s in listed if not s.references])
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
