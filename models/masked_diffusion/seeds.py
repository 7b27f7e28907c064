"""Per-image noise seeds: a caption's noise depends on (its image, the seed), never on its batch mates.

`models.seeding.image_seeds` is the project's shared definition; until it exists this module defines
the same function (a hash of the preprocessed pixel bytes and the seed) and uses it.
"""

from __future__ import annotations

import hashlib

import torch

try:  # the shared definition, when present
    from models.seeding import image_seeds  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on what is installed beside this package

    def image_seeds(pixel_values: torch.Tensor, seed: int) -> list[int]:
        """One 63-bit seed per image: sha256 of the seed and the image's float32 pixel bytes."""
        out = []
        for image in pixel_values.detach().to("cpu", torch.float32):
            digest = hashlib.sha256(str(int(seed)).encode() + b":" + image.contiguous().numpy().tobytes())
            out.append(int.from_bytes(digest.digest()[:8], "little") & (2**63 - 1))
        return out


def generators(pixel_values: torch.Tensor, seed: int) -> list[torch.Generator]:
    """One torch generator per image, on the images' device, seeded by `image_seeds`."""
    device = pixel_values.device
    return [torch.Generator(device=device).manual_seed(s) for s in image_seeds(pixel_values, seed)]
