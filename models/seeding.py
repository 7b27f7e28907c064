"""Per-image random seeds for samplers, so a caption depends on (image, seed) and nothing else.

The caption API receives preprocessed pixels, not image ids, so an image's identity is the hash of its
preprocessed pixel bytes: the same image gets the same seed in any batch, at any batch position, on any
device, and two different images get unrelated seeds. Pixels are hashed as contiguous float32 on the
CPU, so a half-precision or GPU copy of the batch hashes like the float32 one the preprocessing made
(only where casting loses nothing; a model run in float16 hashes its float16-rounded pixels).

Shared by every sampler that draws noise per image (LaDiC, the masked-diffusion captioner).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch


def image_seeds(pixel_values: torch.Tensor, seed: int) -> list[int]:
    """One 63-bit seed per image of a (batch, ...) tensor: sha256(seed, the image's float32 bytes)."""
    import torch

    pixels = pixel_values.detach().to("cpu", torch.float32).contiguous()
    out = []
    for image in pixels:
        digest = hashlib.sha256(int(seed).to_bytes(8, "little", signed=True))
        digest.update(str(tuple(image.shape)).encode())
        digest.update(image.numpy().tobytes())
        out.append(int.from_bytes(digest.digest()[:8], "little") >> 1)  # torch seeds: < 2**63
    return out
