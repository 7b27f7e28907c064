"""NoCaps (Agrawal et al., ICCV 2019): novel object captioning at scale, validation split.

4,500 Open Images validation images, ten captions each, in three domains by how their objects relate
to COCO's: in-domain (only COCO classes), near-domain (COCO and novel classes), out-domain (only novel
classes). Models train on COCO and are scored here overall and per domain; each domain is scored on
its own (CIDEr's document frequencies from that domain's references), as the NoCaps evaluation server
reports them.

The captions file (`nocaps_val_4500_captions.json`) is COCO-style:

    {"images": [{"id": 0, "open_images_id": "0013ea2087020901", "file_name": "0013ea2087020901.jpg",
                 "coco_url": "https://s3.amazonaws.com/nocaps/val/0013ea2087020901.jpg",
                 "height": 1024, "width": 732, "domain": "in-domain"}, ...],
     "annotations": [{"image_id": 0, "id": 0, "caption": "A baby is standing in front of a house."}, ...]}

Image ids are NoCaps' `id` (what the evaluation server and lmms-eval's nocaps tasks use). Layout under
the root (`root` option or $NOCAPS_ROOT); `split_file` / `image_root` override it, as for Karpathy sets:

    nocaps_val_4500_captions.json
    val/<file_name>                     the images, each downloadable from its `coco_url`

Splits: `val`, and one per domain (`val-in-domain`, `val-near-domain`, `val-out-domain`), which
`subsets("val")` names so `bench score` adds a row per domain. There is no train or test split here
(NoCaps' test references are held by its server). `bench data check --task nocaps` verifies the files.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

from bench.api import SPLITS, Sample
from tasks.karpathy import DatasetError, PublishedKarpathyTask, Source

DOMAINS = ("in-domain", "near-domain", "out-domain")
CAPTIONS_URL = "https://nocaps.s3.amazonaws.com/nocaps_val_4500_captions.json"


def read_nocaps_json(path: Path) -> dict[str, Any]:
    """Read and validate a NoCaps captions file (images with a domain, annotations with captions)."""
    if not path.is_file():
        raise DatasetError(f"captions file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path} is not valid JSON ({err}); is the download complete?") from err
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise DatasetError(f"{path}: expected NoCaps' 'images' and 'annotations' lists")
    for n, image in enumerate(data["images"]):
        for key in ("id", "file_name", "domain"):
            if key not in image:
                raise DatasetError(f"{path}: images[{n}] lacks key {key!r} (NoCaps captions files carry "
                                   "id, file_name and domain)")
        if image["domain"] not in DOMAINS:
            raise DatasetError(f"{path}: images[{n}] has domain {image['domain']!r}; expected one of {DOMAINS}")
    for n, ann in enumerate(data["annotations"]):
        if "image_id" not in ann or not isinstance(ann.get("caption"), str):
            raise DatasetError(f"{path}: annotations[{n}] lacks image_id or a caption string")
    return data


class NocapsTask(PublishedKarpathyTask):
    """NoCaps validation (4,500 Open Images images; in-, near- and out-domain), scored per domain.

    Args:
        root: folder holding nocaps_val_4500_captions.json and val/ (default: $NOCAPS_ROOT).
        split_file, image_root: override the layout's paths.
        max_images, expected: as for `KarpathyTask` (split `val`).
    """

    name = "nocaps"
    env_var = "NOCAPS_ROOT"
    split_filename = "nocaps_val_4500_captions.json"
    image_subdir = "val"
    version = "nocaps-val-2019"
    licence = "annotations CC BY 2.0 (nocaps); images from Open Images V4 under their own licences"
    expected_sizes = {"val": 4_500}
    layout_sources = (
        Source(split_filename, CAPTIONS_URL, "validation captions with each image's domain", folder=False),
        Source("val", "https://s3.amazonaws.com/nocaps/val/", "each image at the coco_url of the captions file"),
    )

    def __init__(self, root: str | Path | None = None, split_file: str | Path | None = None,
                 image_root: str | Path | None = None, max_images: dict[str, int] | None = None,
                 expected: dict[str, int] | None = None):
        super().__init__(root, split_file, image_root, {"val": "val"}, max_images, expected)

    @cached_property
    def _catalogue(self) -> tuple[dict[str, list[Sample]], dict[str, list[tuple[Path, str]]]]:
        self.ensure_files()
        data = read_nocaps_json(self.split_file)
        refs: dict[str, list[str]] = {}
        for ann in data["annotations"]:
            if ann["caption"].strip():
                refs.setdefault(str(ann["image_id"]), []).append(ann["caption"].strip())
        listed: dict[str, list[Sample]] = {split: [] for split in SPLITS}
        where: dict[str, list[tuple[Path, str]]] = {split: [] for split in SPLITS}
        for image in data["images"]:
            listed["val"].append(Sample(str(image["id"]), self.image_root / image["file_name"],
                                        tuple(refs.get(str(image["id"]), ()))))
            where["val"].append((self.image_root, image["file_name"]))
        self.domain_of = {str(image["id"]): image["domain"] for image in data["images"]}
        if "val" in self.max_images:
            cap = int(self.max_images["val"])
            listed["val"], where["val"] = listed["val"][:cap], where["val"][:cap]
        return listed, where

    def remedy(self) -> str:
        root = str(self.root) if self.root is not None else "ROOT"
        return (f"nocaps expects under {root}:\n"
                f"  {self.split_filename}  {CAPTIONS_URL}\n"
                f"  val/  the images, each from the `coco_url` its entry in that file names\n"
                f"Download them (the benchmark never downloads) and point the benchmark at the root with "
                f"NOCAPS_ROOT={root} or `tasks: {{nocaps: {{root: {root}}}}}` in bench.yaml.")

    def subsets(self, split: str) -> dict[str, str]:
        """The domain splits of `split` (name -> split), for per-domain rows."""
        return {domain: f"{split}-{domain}" for domain in DOMAINS} if split == "val" else {}

    def _domain(self, split: str) -> tuple[str, str | None]:
        for domain in DOMAINS:
            if split == f"val-{domain}":
                return "val", domain
        return split, None

    def _only(self, samples: list[Sample], domain: str | None) -> list[Sample]:
        self._catalogue  # noqa: B018 - fills domain_of
        return samples if domain is None else [s for s in samples if self.domain_of[s.image_id] == domain]

    def listed(self, split: str) -> list[Sample]:
        base, domain = self._domain(split)
        return self._only(super().listed(base), domain)

    def present(self, split: str) -> list[Sample]:
        base, domain = self._domain(split)
        return self._only(super().present(base), domain)

    def samples(self, split: str) -> list[Sample]:
        base, domain = self._domain(split)
        return self._only(super().samples(base), domain)

    def _check_split(self, split: str) -> None:
        if self._domain(split)[0] not in SPLITS:
            raise DatasetError(f"unknown split {split!r}; NoCaps splits are val and "
                               f"{', '.join(f'val-{d}' for d in DOMAINS)}")
