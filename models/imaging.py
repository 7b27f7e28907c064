"""Image transforms in plain PIL + torch (no torchvision: it has no CPU wheel matching pinned torch)."""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)


def to_tensor(image: Image.Image, size: int, mean=HALF, std=HALF,
              resample=Image.Resampling.BICUBIC) -> torch.Tensor:
    """Resize to size x size, scale to [0, 1], normalise per channel -> (3, size, size) float32."""
    if image.size != (size, size):
        image = image.resize((size, size), resample)
    array = np.asarray(image, dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array).permute(2, 0, 1).contiguous()
    return (tensor - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def random_resized_crop(image: Image.Image, scale: tuple[float, float] = (0.5, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3),
                        rng: random.Random | None = None) -> Image.Image:
    """Crop a random area fraction in `scale` with aspect ratio in `ratio` (Inception-style)."""
    rng = rng or random
    width, height = image.size
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            left = rng.randint(0, width - w)
            top = rng.randint(0, height - h)
            return image.crop((left, top, left + w, top + h))
    return image


def augment(image: Image.Image, mode: str) -> Image.Image:
    """'none' | 'crop' | 'crop_flip'. Flips are off by default: they swap 'left' and 'right'."""
    if mode == "none":
        return image
    if mode not in ("crop", "crop_flip"):
        raise ValueError(f"augment must be 'none', 'crop' or 'crop_flip', got {mode!r}")
    image = random_resized_crop(image)
    if mode == "crop_flip" and random.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image
