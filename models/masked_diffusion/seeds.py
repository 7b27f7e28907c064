"""Per-image noise generators: a caption's noise depends on (its image, the seed), never on its batch
mates (seeds from the project's shared `models.seeding.image_seeds`)."""

from __future__ import annotations

import torch

from models.seeding import image_seeds


def generators(pixel_values: torch.Tensor, seed: int) -> list[torch.Generator]:
    """One torch generator per image, on the images' device, seeded by `image_seeds`."""
    device = pixel_values.device
    return [torch.Generator(device=device).manual_seed(s) for s in image_seeds(pixel_values, seed)]
