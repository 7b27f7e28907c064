"""An on-disk cache of frozen image-encoder features, so a frozen encoder (LaDiC's BLIP ViT) runs once per
image instead of once per image per epoch.

Entries are keyed by (encoder, image id, transform). The encoder and the transform together make the
cache's *namespace*: a folder named by a hash of both (plus the encoder's weights fingerprint and this
file's format version). Change any of them and lookups go to another folder, so stale features are never
returned: that is the invalidation. Old namespaces stay on disk until `clear()` or `prune()` removes them.

Layout under the cache root (default `$BENCH_CACHE/features`, `.cache/features`):

    <encoder-slug>-<namespace hash>/
        key.json                  what the namespace hash was computed from (human-readable)
        ab/ab3f...e1.pt           one tensor per image, file named by a hash of the image id

One file per image keeps writers independent: DataLoader workers and concurrent Ray jobs each write whole
files atomically (temp file, then rename), and readers see a complete file or none. A corrupt or
unreadable entry is a miss (and is removed). Sizes to plan for: a ViT-B/16 at 224 px stores 197 x 768
values per image, 0.3 MB in float16, about 37 GB for COCO's 123k images; at 384 px, 577 tokens, 0.9 MB.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.api import stable_hash

if TYPE_CHECKING:  # pragma: no cover
    import torch

FORMAT_VERSION = 1
KEY_FILE = "key.json"


def default_root() -> Path:
    return Path(os.environ.get("BENCH_CACHE", ".cache")).expanduser() / "features"


def fingerprint_module(module: torch.nn.Module) -> str:
    """A hash of a module's parameters and buffers (names, shapes, dtypes, values).

    Use it as `encoder_hash` when the encoder's id alone may not pin its weights (a local checkpoint
    folder that can be overwritten). About a second for a ViT-B.
    """
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        value = tensor.detach().to("cpu").contiguous()
        if value.dtype == torch.bfloat16:  # numpy has no bfloat16: hash its bits
            value = value.view(torch.int16)
        digest.update(value.numpy().tobytes())
    return digest.hexdigest()[:16]


class FeatureCache:
    """Features of one (encoder, transform) pair, by image id.

    Args:
        encoder: the encoder's id (e.g. "Salesforce/blip-image-captioning-base:vision").
        transform: a description of everything between the file and the encoder input (size, resampling,
            normalisation, crop): a string or a JSON-serialisable dict. Train-time augmentation must not be
            cached (features of an augmented image differ on every draw).
        encoder_hash: optional fingerprint of the weights (`fingerprint_module`).
        root: the cache folder (default `$BENCH_CACHE/features`).
        dtype: storage dtype, e.g. "float16" to halve the disk footprint; None keeps the tensor's dtype.
    """

    def __init__(self, encoder: str, transform: str | dict[str, Any], encoder_hash: str = "",
                 root: str | Path | None = None, dtype: str | None = "float16"):
        self.key = {"format": FORMAT_VERSION, "encoder": encoder, "encoder_hash": encoder_hash,
                    "transform": transform, "dtype": dtype}
        self.namespace = stable_hash(self.key, length=16)
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", encoder).strip("-")[:48] or "encoder"
        self.root = Path(root).expanduser() if root is not None else default_root()
        self.dir = self.root / f"{slug}-{self.namespace}"
        self.dtype = dtype

    # -- entries ----------------------------------------------------------------------------------
    def path(self, image_id: str) -> Path:
        """Where the entry of `image_id` lives (a hash: ids may hold any character)."""
        name = hashlib.sha256(str(image_id).encode()).hexdigest()[:32]
        return self.dir / name[:2] / f"{name}.pt"

    def get(self, image_id: str) -> torch.Tensor | None:
        """The cached features, or None on a miss (absent, corrupt, or stored for another id)."""
        import torch

        path = self.path(image_id)
        if not path.is_file():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            if entry.get("image_id") != str(image_id):
                return None
            return entry["features"]
        except Exception:  # noqa: BLE001 - a damaged entry (killed writer, full disk) is a miss
            path.unlink(missing_ok=True)
            return None

    def put(self, image_id: str, features: torch.Tensor) -> None:
        """Store features for `image_id` atomically (concurrent writers of one id are harmless)."""
        import torch

        self._write_key()
        value = features.detach().to("cpu")
        if self.dtype is not None:
            value = value.to(getattr(torch, self.dtype))
        path = self.path(image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                # clone: a row of a batch is a view, and torch.save would write the whole batch's storage
                torch.save({"image_id": str(image_id), "features": value.clone()}, f)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def __contains__(self, image_id: str) -> bool:
        return self.path(image_id).is_file()

    def __len__(self) -> int:
        return sum(1 for _ in self.dir.glob("*/*.pt")) if self.dir.is_dir() else 0

    def get_or_compute(self, image_ids: Sequence[str],
                       compute: Callable[[list[int]], torch.Tensor]) -> list[torch.Tensor]:
        """Features of a batch: hits from disk, misses from `compute(indices)` (stored for next time).

        `compute` gets the positions of the misses in `image_ids` and returns their features stacked
        along dim 0, e.g. `lambda idx: encoder(pixels[idx])`.
        """
        found = [self.get(i) for i in image_ids]
        todo = [k for k, f in enumerate(found) if f is None]
        if todo:
            fresh = compute(todo)
            if len(fresh) != len(todo):
                raise ValueError(f"compute returned {len(fresh)} feature rows for {len(todo)} images")
            for k, value in zip(todo, fresh, strict=True):
                self.put(image_ids[k], value)
                found[k] = value
        return found  # type: ignore[return-value]

    # -- maintenance ------------------------------------------------------------------------------
    def _write_key(self) -> None:
        key_file = self.dir / KEY_FILE
        if key_file.is_file():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = key_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.key, indent=2, sort_keys=True, default=str))
        os.replace(tmp, key_file)

    def clear(self) -> None:
        """Remove every entry of this namespace."""
        shutil.rmtree(self.dir, ignore_errors=True)

    def prune(self) -> list[Path]:
        """Remove the other namespaces of the same encoder id (stale transforms or weights)."""
        removed = []
        if not self.root.is_dir():
            return removed
        for other in self.root.iterdir():
            key_file = other / KEY_FILE
            if other == self.dir or not key_file.is_file():
                continue
            try:
                encoder = json.loads(key_file.read_text()).get("encoder")
            except (OSError, json.JSONDecodeError):
                continue
            if encoder == self.key["encoder"]:
                shutil.rmtree(other, ignore_errors=True)
                removed.append(other)
        return removed

    def __repr__(self) -> str:
        return f"FeatureCache({self.key['encoder']!r}, dir={str(self.dir)!r})"
