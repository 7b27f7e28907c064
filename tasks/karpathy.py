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
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

from bench.api import SPLITS, Sample, Task, TaskInfo

DEFAULT_SPLIT_MAP = {"train": "train", "restval": "train", "val": "val", "test": "test"}


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file and the remedy."""


def read_karpathy_json(path: Path) -> dict[str, Any]:
    """Read and minimally validate a Karpathy split file."""
    if not path.is_file():
        raise DatasetError(f"split file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path} is not valid JSON ({err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DatasetError(f"{path} lacks the Karpathy 'images' list (keys found: {sorted(data)[:8]})")
    for i, entry in enumerate(data["images"][:1000]):
        for key in ("filename", "split", "sentences"):
            if key not in entry:
                raise DatasetError(f"{path}: images[{i}] lacks key {key!r}")
    return data


def image_id_of(entry: dict[str, Any]) -> str:
    """COCO entries carry `cocoid` (used by the official evaluation); others use the file stem."""
    if "cocoid" in entry:
        return str(entry["cocoid"])
    return Path(entry["filename"]).stem


class KarpathyTask(Task):
    """A task read from a Karpathy split file and an image folder.

    Args:
        split_file: the dataset_*.json file.
        image_root: folder that `filepath/filename` of each entry is relative to.
        split_map: Karpathy split name -> train/val/test (restval -> train by default).
        max_images: optional cap per split (first N in file order), for quick runs.
    """

    name = "karpathy"

    def __init__(
        self,
        split_file: str | Path,
        image_root: str | Path,
        split_map: dict[str, str] | None = None,
        max_images: dict[str, int] | None = None,
        name: str | None = None,
    ):
        self.split_file = Path(split_file).expanduser()
        self.image_root = Path(image_root).expanduser()
        self.split_map = dict(split_map or DEFAULT_SPLIT_MAP)
        self.max_images = dict(max_images or {})
        if name:
            self.name = name

    # Subclasses that generate or locate their files override this; it runs before first read.
    def ensure_files(self) -> None:
        pass

    @cached_property
    def _listed(self) -> dict[str, list[Sample]]:
        """Every sample listed in the split file, by split, image present or not."""
        self.ensure_files()
        data = read_karpathy_json(self.split_file)
        listed: dict[str, list[Sample]] = {split: [] for split in SPLITS}
        for entry in data["images"]:
            split = self.split_map.get(entry["split"])
            if split is None:
                continue
            refs = tuple(s["raw"].strip() for s in entry["sentences"] if s.get("raw", "").strip())
            path = self.image_root / entry.get("filepath", "") / entry["filename"]
            listed[split].append(Sample(image_id_of(entry), path, refs))
        for split, cap in self.max_images.items():
            if split not in listed:
                raise DatasetError(f"max_images names split {split!r}; splits are {list(SPLITS)}")
            listed[split] = listed[split][: int(cap)]
        return listed

    @cached_property
    def _present(self) -> dict[str, list[Sample]]:
        return {split: [s for s in items if s.image_path.is_file()] for split, items in self._listed.items()}

    def samples(self, split: str) -> list[Sample]:
        if split not in SPLITS:
            raise DatasetError(f"unknown split {split!r}; splits are {list(SPLITS)}")
        return self._present[split]

    def references(self, split: str) -> dict[str, list[str]]:
        # From the split file, so an image missing on disk still has its references for scoring.
        return {s.image_id: list(s.references) for s in self._listed[split]}

    def missing(self, split: str) -> list[str]:
        present = {s.image_id for s in self._present[split]}
        return [s.image_id for s in self._listed[split] if s.image_id not in present]

    def info(self) -> TaskInfo:
        return TaskInfo(
            name=self.name,
            version="karpathy",
            description=f"Karpathy-format dataset from {self.split_file}",
            licence="see the dataset's own terms",
            source=str(self.split_file),
            sizes={split: len(items) for split, items in self._listed.items()},
        )
