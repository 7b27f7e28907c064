"""The two trivial references every captioning table should show.

- `constant`: the most frequent training caption, for every image. Any model below it has learned
  nothing about images.
- `nearest-neighbour`: the consensus caption of the k nearest training images in a simple image
  feature space (downsampled pixels), after Devlin et al. 2015, "Exploring Nearest Neighbor Approaches
  for Image Captioning". A model below it does no better than retrieval.

Paradigm "reference"; no network evaluations; no gradient training (`prepare` fits them).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from bench.api import Captioner, CaptionerConfig, Sample, VariantInfo
from models.imaging import to_tensor
from models.text import normalise_caption


@dataclass
class ConstantConfig(CaptionerConfig):
    pass


class ConstantCaptioner(Captioner):
    """Reference: the most frequent training caption, for every image."""

    paradigm = "reference"
    trainable = False
    config_class = ConstantConfig
    variants = {"constant": ConstantConfig()}
    info = {"constant": VariantInfo("none", "the most frequent training caption")}

    def __init__(self, config: ConstantConfig):
        super().__init__(config)
        self.text = ""

    def prepare(self, train: Sequence[Sample]) -> None:
        counts = Counter(normalise_caption(r) for s in train for r in s.references)
        if not counts:
            raise ValueError("constant captioner: the training split has no captions")
        best = max(counts.values())
        self.text = min(c for c, n in counts.items() if n == best)  # ties: alphabetical, deterministic

    def preprocess(self, image: Image.Image, train: bool = False) -> torch.Tensor:
        return torch.zeros(1)

    def caption(self, pixel_values: torch.Tensor, **decoding: Any) -> list[str]:
        return [self.text] * len(pixel_values)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "constant.json").write_text(json.dumps({"config": self.config.to_dict(),
                                                             "text": self.text}))

    @classmethod
    def load(cls, directory: Path) -> ConstantCaptioner:
        state = json.loads((directory / "constant.json").read_text())
        model = cls(ConstantConfig(**state["config"]))
        model.text = state["text"]
        return model


@dataclass
class NearestNeighbourConfig(CaptionerConfig):
    feature_size: int = 16  # images are downsampled to feature_size^2 x 3 values
    k: int = 5  # neighbours whose captions compete for consensus


def _unigram_f1(a: list[str], b: list[str]) -> float:
    common = sum((Counter(a) & Counter(b)).values())
    return 0.0 if common == 0 else 2 * common / (len(a) + len(b))


class NearestNeighbourCaptioner(Captioner):
    """Reference: the consensus caption of the nearest training images (downsampled-pixel features)."""

    paradigm = "reference"
    trainable = False
    config_class = NearestNeighbourConfig
    variants = {"nearest-neighbour": NearestNeighbourConfig()}
    info = {"nearest-neighbour": VariantInfo("none", "consensus caption of the nearest training images")}

    def __init__(self, config: NearestNeighbourConfig):
        super().__init__(config)
        self.features = torch.zeros(0, 3 * config.feature_size ** 2)
        self.captions: list[list[str]] = []

    def preprocess(self, image: Image.Image, train: bool = False) -> torch.Tensor:
        size = self.config.feature_size
        feature = to_tensor(image, size, resample=Image.Resampling.BOX).flatten()
        return feature / (feature.norm() + 1e-8)  # cosine similarity becomes a dot product

    def prepare(self, train: Sequence[Sample]) -> None:
        feats, captions = [], []
        for sample in train:
            try:
                feats.append(self.preprocess(sample.load_image()))
            except OSError:
                continue  # an unreadable training image is simply not in the index
            captions.append([normalise_caption(r) for r in sample.references])
        if not feats:
            raise ValueError("nearest-neighbour captioner: no readable training image")
        self.features = torch.stack(feats)
        self.captions = captions

    def caption(self, pixel_values: torch.Tensor, **decoding: Any) -> list[str]:
        k = min(self.config.k, len(self.captions))
        scores = pixel_values.flatten(1).float() @ self.features.T
        out = []
        for row in scores.topk(k, dim=1).indices.tolist():
            pool = [c for i in row for c in self.captions[i]]
            words = [c.split() for c in pool]
            consensus = [sum(_unigram_f1(w, o) for o in words) for w in words]
            out.append(pool[max(range(len(pool)), key=lambda j: (consensus[j], -j))])
        return out

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        torch.save({"config": self.config.to_dict(), "features": self.features,
                    "captions": self.captions}, directory / "nearest_neighbour.pt")

    @classmethod
    def load(cls, directory: Path) -> NearestNeighbourCaptioner:
        state = torch.load(directory / "nearest_neighbour.pt", weights_only=True)
        model = cls(NearestNeighbourConfig(**state["config"]))
        model.features, model.captions = state["features"], state["captions"]
        return model
