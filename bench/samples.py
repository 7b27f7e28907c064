"""The one place that decides which samples of a split are usable: every phase goes through here.

An image listed in a split but absent on disk is `missing` (the task reports it); one that is present
but cannot be decoded (truncated JPEG, not an image) is `unreadable`. Both are skipped and counted by
every phase the same way, so a corrupt test image costs one image, never a phase or a job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bench.api import Sample

if TYPE_CHECKING:  # pragma: no cover
    import torch


def load(sample: Sample, captioner: Any, train: bool = False) -> torch.Tensor | None:
    """The preprocessed image of `sample`, or None when it cannot be read (the caller counts it)."""
    try:
        image = sample.load_image()
    except OSError:
        return None
    return captioner.preprocess(image, train=train)


def readable(samples: Sequence[Sample], captioner: Any, limit: int | None = None,
             ) -> tuple[list[Sample], torch.Tensor | None, list[str]]:
    """The first `limit` readable samples (all when None), their stacked preprocessed images, and the
    ids of the unreadable samples passed over on the way. Images None when nothing is readable."""
    import torch

    kept: list[Sample] = []
    pixels: list[torch.Tensor] = []
    skipped: list[str] = []
    for sample in samples:
        if limit is not None and len(kept) >= limit:
            break
        x = load(sample, captioner)
        if x is None:
            skipped.append(sample.image_id)
            continue
        kept.append(sample)
        pixels.append(x)
    return kept, (torch.stack(pixels) if pixels else None), skipped
