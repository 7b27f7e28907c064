"""Datasets in the Karpathy split format: one JSON file listing images, their split and captions.

The format (as published with NeuralTalk for COCO, Flickr8k and Flickr30k):

    {"dataset": "coco",
     "images": [{"filepath": "val2014", "filename": "COCO_val2014_000000391895.jpg",
                 "imgid": 0, "split": "test", "cocoid": 391895,
                 "sentences": [{"raw": "A man with a red helmet ...", "tokens": [...], ...}, ...]},
                ...]}

`filepath` is absent for Flickr. COCO's "restval" split is merged into train (the convention of every
captioning paper since Karpathy & Fei-Fei 2015). The procedural shapes task writes the same format, so
every dataset goes through this one loader.

`KarpathyTask` takes explicit paths (any Karpathy-format set, e.g. Flickr8k, by configuration alone);
`PublishedKarpathyTask` adds what a published dataset knows about itself: a root folder from an option or
an environment variable, the expected layout and split sizes, and where each file is published (COCO and
Flickr30k are declared this way in tasks/coco.py and tasks/flickr30k.py).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from bench.api import SPLITS, Sample, Task, TaskInfo

DEFAULT_SPLIT_MAP = {"train": "train", "restval": "train", "val": "val", "test": "test"}


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file and the remedy."""


@dataclass(frozen=True)
class Source:
    """One item of a dataset's layout under its root, and where it is published."""

    item: str  # file or folder name under the root, e.g. "train2014"
    url: str
    note: str = ""
    folder: bool = True
    aliases: tuple[str, ...] = ()  # other names the item has in some distributions (for `prepare`)


def read_karpathy_json(path: Path) -> dict[str, Any]:
    """Read and minimally validate a Karpathy split file."""
    if not path.is_file():
        raise DatasetError(f"split file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path} is not valid JSON ({err}); is the download complete?") from err
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        found = sorted(data)[:8] if isinstance(data, dict) else type(data).__name__
        raise DatasetError(f"{path} lacks the Karpathy 'images' list (found: {found})")
    for i, entry in enumerate(data["images"][:1000]):
        for key in ("filename", "split", "sentences"):
            if key not in entry:
                raise DatasetError(f"{path}: images[{i}] lacks key {key!r}")
    return data


#: Control characters (NUL among them), DEL, C1 controls and the Unicode line/paragraph separators.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def clean_caption(raw: Any) -> str:
    """A reference caption as text: control characters (a NUL, a stray \\r) become spaces, ends stripped.

    A caption that is empty after this (only NULs, only spaces) is no reference: the loader drops it, and
    an image left with none is a `bench data check` problem rather than a scoring failure later.
    """
    return _CONTROLS.sub(" ", raw if isinstance(raw, str) else "").strip()


def image_id_of(entry: dict[str, Any]) -> str:
    """COCO entries carry `cocoid` (used by the official evaluation); others use the file stem."""
    if "cocoid" in entry:
        return str(entry["cocoid"])
    return Path(entry["filename"]).stem


def expand_path(value: str | Path) -> Path:
    """`~` and `$VAR`/`${VAR}` expanded: bench.yaml may say `split_file: ${FLICKR8K_ROOT}/x.json`.

    Expansion happens where the task is built (the job's worker), so the job hash keeps the portable text.
    """
    return Path(os.path.expandvars(str(value))).expanduser()


def _unset_variable_hint(path: Path) -> str:
    return " (an environment variable in it is not set)" if "$" in str(path) else ""


class KarpathyTask(Task):
    """A task read from a Karpathy split file and an image folder.

    Args:
        split_file: the dataset_*.json file.
        image_root: folder that `filepath/filename` of each entry is relative to.
        split_map: Karpathy split name -> train/val/test (restval -> train by default).
        max_images: optional cap per split (first N in file order), for quick runs.
        name: the task's name in reports (default: the class's).
        expected: images per split that `bench data check` compares against (e.g. Flickr8k's
            {train: 6000, val: 1000, test: 1000}); loading itself never needs it.
    """

    name = "karpathy"
    #: images per split of the full published dataset (after the split map); {} when unknown.
    expected_sizes: ClassVar[dict[str, int]] = {}

    def __init__(
        self,
        split_file: str | Path,
        image_root: str | Path,
        split_map: dict[str, str] | None = None,
        max_images: dict[str, int] | None = None,
        name: str | None = None,
        expected: dict[str, int] | None = None,
    ):
        self.split_file = expand_path(split_file)
        self.image_root = expand_path(image_root)
        self.split_map = dict(split_map or DEFAULT_SPLIT_MAP)
        self.max_images = dict(max_images or {})
        if name:
            self.name = name
        sizes = self.expected_sizes if expected is None else expected
        self.expected = {k: int(v) for k, v in sizes.items()}
        unknown = sorted(set(self.expected) - set(SPLITS))
        if unknown:
            raise DatasetError(f"{self.name}: expected names split(s) {unknown}; splits are {list(SPLITS)}")

    # Subclasses that generate or locate their files override this; it runs before first read.
    def ensure_files(self) -> None:
        if not self.split_file.is_file():
            raise DatasetError(f"{self.name}: split file not found: {self.split_file}"
                               f"{_unset_variable_hint(self.split_file)}\n{self.remedy()}")

    def remedy(self) -> str:
        """What to do when files are missing (published datasets say where to get them)."""
        return (f"Point the task at a Karpathy-format split file and its image folder "
                f"(tasks.{self.name}.split_file / image_root in bench.yaml).")

    def sources(self) -> list[Source]:
        """The layout items and where they are published (empty for a generic configured set)."""
        return []

    @cached_property
    def _catalogue(self) -> tuple[dict[str, list[Sample]], dict[str, list[tuple[Path, str]]]]:
        """(every sample in the split file by split, image present or not; its (folder, file name))."""
        self.ensure_files()
        data = read_karpathy_json(self.split_file)
        listed: dict[str, list[Sample]] = {split: [] for split in SPLITS}
        where: dict[str, list[tuple[Path, str]]] = {split: [] for split in SPLITS}
        folders: dict[str, Path] = {}  # one Path per folder: building 123k paths part by part is slow
        for entry in data["images"]:
            split = self.split_map.get(entry["split"])
            if split is None:
                continue
            refs = tuple(c for c in (clean_caption(s.get("raw", "")) for s in entry["sentences"]) if c)
            sub, _, filename = f"{entry.get('filepath', '')}/{entry['filename']}".rpartition("/")
            folder = folders.get(sub) or folders.setdefault(sub, self.image_root / sub)
            listed[split].append(Sample(image_id_of(entry), folder / filename, refs))
            where[split].append((folder, filename))
        for split, cap in self.max_images.items():
            if split not in listed:
                raise DatasetError(f"max_images names split {split!r}; splits are {list(SPLITS)}")
            listed[split], where[split] = listed[split][: int(cap)], where[split][: int(cap)]
        return listed, where

    @property
    def _listed(self) -> dict[str, list[Sample]]:
        return self._catalogue[0]

    def listed(self, split: str) -> list[Sample]:
        """Every sample of `split` in the split file, whether its image is on disk or not."""
        self._check_split(split)
        return self._listed[split]

    def image_folders(self, split: str | None = None) -> list[Path]:
        """The folders that the images of `split` (default: all splits) live in."""
        if split:
            self._check_split(split)
        splits = [split] if split else list(SPLITS)
        return sorted({folder for sp in splits for folder, _ in self._catalogue[1][sp]})

    def expected_for_check(self) -> dict[str, int]:
        """Expected images per split, capped by `max_images` (a capped run expects fewer)."""
        return {split: min(n, int(self.max_images.get(split, n))) for split, n in self.expected.items()}

    @cached_property
    def _scan(self) -> tuple[dict[str, list[Sample]], dict[str, list[str]]]:
        """(samples whose image file exists, by split; absent image folders, by split)."""
        # One directory listing per folder instead of a stat per image: 123k stats are slow on network
        # file systems.
        names: dict[Path, set[str]] = {}
        absent: set[Path] = set()
        for folder in self.image_folders():
            try:
                names[folder] = set(os.listdir(folder))
            except (FileNotFoundError, NotADirectoryError):
                names[folder] = set()
                absent.add(folder)
        listed, where = self._catalogue
        present = {split: [s for s, (folder, name) in zip(items, where[split], strict=True)
                           if name in names[folder]]
                   for split, items in listed.items()}
        gone = {split: [str(f) for f in self.image_folders(split) if f in absent] for split in SPLITS}
        return present, gone

    def present(self, split: str) -> list[Sample]:
        """Samples of `split` whose image file exists, without `samples`' check of the folders."""
        self._check_split(split)
        return self._scan[0][split]

    def absent_folders(self, split: str | None = None) -> list[str]:
        """Image folders of `split` (default: all splits) that do not exist."""
        if split:
            self._check_split(split)
        splits = [split] if split else list(SPLITS)
        return sorted({f for sp in splits for f in self._scan[1][sp]})

    def _check_split(self, split: str) -> None:
        if split not in SPLITS:
            raise DatasetError(f"unknown split {split!r}; splits are {list(SPLITS)}")

    def samples(self, split: str) -> list[Sample]:
        """Samples of `split` whose image file exists (a corrupt one is found only when decoded).

        An absent image *folder* is a setup error rather than a missing image: it raises DatasetError
        instead of silently running on a fraction of the split.
        """
        gone = self.absent_folders(split)
        if gone:
            raise DatasetError(
                f"{self.name}: image folder(s) not found: {', '.join(gone)} (the {split} split lists "
                f"{len(self._listed[split])} images there; image_root is {self.image_root}"
                f"{_unset_variable_hint(self.image_root)})\n{self.remedy()}")
        return self.present(split)

    def references(self, split: str) -> dict[str, list[str]]:
        # From the split file, so an image missing on disk still has its references for scoring.
        return {s.image_id: list(s.references) for s in self.listed(split)}

    def missing(self, split: str) -> list[str]:
        present = {s.image_id for s in self.present(split)}
        return [s.image_id for s in self.listed(split) if s.image_id not in present]

    def info(self) -> TaskInfo:
        return TaskInfo(
            name=self.name,
            version="karpathy",
            description=f"Karpathy-format dataset from {self.split_file}",
            licence="see the dataset's own terms",
            source=str(self.split_file),
            sizes={split: len(items) for split, items in self._listed.items()},
        )


class PublishedKarpathyTask(KarpathyTask):
    """A published dataset on the Karpathy split: files under one root folder with a known layout.

    The root comes from the `root` option, else the environment variable `env_var`; `split_file` and
    `image_root` override the layout's paths one by one (then no root is needed for that path).
    """

    env_var: ClassVar[str] = ""
    split_filename: ClassVar[str] = ""
    image_subdir: ClassVar[str] = ""  # image_root under the root ("" when entries carry `filepath`)
    version: ClassVar[str] = "karpathy"
    licence: ClassVar[str] = "see the dataset's own terms"
    layout_sources: ClassVar[tuple[Source, ...]] = ()

    def __init__(
        self,
        root: str | Path | None = None,
        split_file: str | Path | None = None,
        image_root: str | Path | None = None,
        split_map: dict[str, str] | None = None,
        max_images: dict[str, int] | None = None,
        expected: dict[str, int] | None = None,
    ):
        if root:
            self.root, self.root_origin = expand_path(root), f"--root / tasks.{self.name}.root"
        elif os.environ.get(self.env_var):
            self.root, self.root_origin = expand_path(os.environ[self.env_var]), f"${self.env_var}"
        else:
            self.root, self.root_origin = None, ""
        if self.root is None and (split_file is None or image_root is None):
            raise DatasetError(f"{self.name}: no data location: set {self.env_var}=ROOT or give "
                               f"tasks.{self.name}.root in bench.yaml (or --root)\n{self.remedy()}")
        split_file = split_file if split_file is not None else self.root / self.split_filename
        image_root = image_root if image_root is not None else self.root / self.image_subdir
        super().__init__(split_file, image_root, split_map, max_images, expected=expected)

    def ensure_files(self) -> None:
        if self.root is not None and not self.root.is_dir():
            raise DatasetError(f"{self.name}: data folder not found: {self.root} (from {self.root_origin})"
                               f"{_unset_variable_hint(self.root)}\n{self.remedy()}")
        super().ensure_files()

    def sources(self) -> list[Source]:
        return list(self.layout_sources)

    def remedy(self) -> str:
        root = str(self.root) if self.root is not None else "ROOT"
        width = max(len(s.item) + (1 if s.folder else 0) for s in self.layout_sources)
        lines = [f"{self.name} expects under {root}:"]
        for s in self.layout_sources:
            item = s.item + ("/" if s.folder else "")
            lines.append(f"  {item:<{width}}  {s.url}" + (f" ({s.note})" if s.note else ""))
        lines += [
            "Download them (the benchmark never downloads), then arrange them with",
            f"  bench data prepare --task {self.name} --root {root} ARCHIVE_OR_FOLDER ...",
            f"and point the benchmark at the root with {self.env_var}={root} or "
            f"`tasks: {{{self.name}: {{root: {root}}}}}` in bench.yaml.",
        ]
        return "\n".join(lines)

    def info(self) -> TaskInfo:
        where = "; ".join(f"{s.item}: {s.url}" for s in self.layout_sources)
        return TaskInfo(
            name=self.name,
            version=self.version,
            description=(type(self).__doc__ or self.name).splitlines()[0],
            licence=self.licence,
            source=where,
            sizes={split: len(items) for split, items in self._listed.items()},
        )
