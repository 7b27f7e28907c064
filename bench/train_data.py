"""The training loop's data: (image, caption) pairs, their collation, and the seeded batch order.

`CaptionPairs` makes every reference caption of every image a sample, reusing a preprocessed image for
its other captions and epochs when the captioner's training preprocess is deterministic; `GlobalBatches`
cuts one seeded permutation into batches and shards them over data-parallel ranks (bench/train.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset, Sampler

from bench.api import Captioner, Sample


class CaptionPairs(Dataset):
    """(image, caption) pairs: every reference caption of every image is one sample.

    Where the captioner's training preprocess is deterministic (no augmentation), each image is decoded
    and preprocessed once and its tensor reused for its other captions and later epochs, up to
    `cache_bytes` (images beyond it are decoded each time). The tensors are the same either way, so
    the cache changes no number; it is off (0) with DataLoader workers, whose copies would not last.
    """

    def __init__(self, captioner: Captioner, samples: Sequence[Sample], captions_per_image: int | None,
                 cache_bytes: int = 0):
        self.captioner = captioner
        self.samples = list(samples)
        self.pairs = [
            (i, caption)
            for i, s in enumerate(self.samples)
            for caption in s.references[: captions_per_image or len(s.references)]
        ]
        self.cache_left = cache_bytes if not captioner.random_augmentation else 0
        self.cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int):
        i, caption = self.pairs[index]
        if i in self.cache:
            return self.cache[i], caption
        try:
            image = self.samples[i].load_image()
        except OSError:  # a corrupt image is skipped in collate, never a crash of the job
            return None
        tensor = self.captioner.preprocess(image, train=True)
        size = tensor.numel() * tensor.element_size()
        if size <= self.cache_left:
            self.cache[i] = tensor
            self.cache_left -= size
        return tensor, caption


class CollatePairs:
    """Picklable collate (DataLoader workers) that drops unreadable images and counts them."""

    def __init__(self, captioner: Captioner):
        self.captioner = captioner

    def __call__(self, items):
        good = [it for it in items if it is not None]
        batch = self.captioner.collate([g[0] for g in good], [g[1] for g in good]) if good else None
        return batch, len(items) - len(good)


class GlobalBatches(Sampler[list[int]]):
    """The batches of one seeded permutation; on rank r of N, items r, r+N, ... of each batch.

    Every rank draws the same permutation from the same generator, so the ranks' shards of batch b
    are a partition of one process's batch b. With N = 1 this is DataLoader's shuffle exactly (one
    `randperm` from the generator, cut into batches). A shard may be empty (a last batch smaller
    than N): the rank then still takes part in the step.
    """

    def __init__(self, size: int, batch_size: int, generator: torch.Generator, rank: int = 0, world: int = 1):
        self.size, self.batch_size, self.generator = size, batch_size, generator
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def __iter__(self):
        order = torch.randperm(self.size, generator=self.generator).tolist()
        for start in range(0, self.size, self.batch_size):
            yield order[start:start + self.batch_size][self.rank::self.world]
