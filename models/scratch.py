"""Shared plumbing for captioners trained from scratch with their own word-level tokenizer.

A subclass supplies `build_module(vocab_size)`, `training_loss` and `caption`; this base trains the
tokenizer on the training captions in `prepare`, then builds the network (its vocabulary size is known
only then), and handles preprocessing, collation and save/load.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from bench.api import Captioner, CaptionerConfig, Sample
from models.imaging import HALF, augment, to_tensor
from models.text import CaptionTokenizer, normalise_caption


@dataclass
class ScratchConfig(CaptionerConfig):
    image_size: int = 224
    augment: str = "none"  # none | crop | crop_flip (flips swap left/right: off unless asked)
    max_tokens: int = 24  # [BOS] + up to 22 words + [EOS]
    max_words: int = 30
    vocab_size: int = 10000
    min_frequency: int = 5


class ScratchCaptioner(Captioner):
    config: ScratchConfig

    def __init__(self, config: ScratchConfig):
        super().__init__(config)
        self.tokenizer: CaptionTokenizer | None = None
        self._module: torch.nn.Module | None = None

    def build_module(self, vocab_size: int) -> torch.nn.Module:
        raise NotImplementedError

    @property
    def module(self) -> torch.nn.Module:
        if self._module is None:
            raise RuntimeError(f"{self.config.variant}: call prepare(train_samples) or load() first")
        return self._module

    def module_ready(self) -> bool:
        return self._module is not None

    def prepare(self, train: Sequence[Sample]) -> None:
        if self._module is not None:
            return  # already prepared or loaded: the vocabulary must not change under the weights
        captions = [normalise_caption(r, self.config.max_words) for s in train for r in s.references]
        self.tokenizer = CaptionTokenizer.train(captions, self.config.vocab_size, self.config.min_frequency)
        self._module = self.build_module(self.tokenizer.vocab_size).to(self.device)

    def preprocess(self, image: Image.Image, train: bool = False) -> torch.Tensor:
        if train:
            image = augment(image, self.config.augment)
        return to_tensor(image, self.config.image_size, HALF, HALF)

    def collate(self, images: list[torch.Tensor], captions: list[str]) -> dict[str, torch.Tensor]:
        assert self.tokenizer is not None
        text = [normalise_caption(c, self.config.max_words) for c in captions]
        return {"pixel_values": torch.stack(images), "input_ids": self.tokenizer.encode(text, self.config.max_tokens)}

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        assert self.tokenizer is not None
        (directory / "config.json").write_text(json.dumps(self.config.to_dict(), indent=1))
        self.tokenizer.save(directory / "tokenizer.json")
        torch.save(self.module.state_dict(), directory / "weights.pt")

    @classmethod
    def load(cls, directory: Path):
        fields = {f.name for f in dataclasses.fields(cls.config_class)}
        raw = json.loads((directory / "config.json").read_text())
        model = cls(cls.config_class(**{k: v for k, v in raw.items() if k in fields}))
        model.tokenizer = CaptionTokenizer.load(directory / "tokenizer.json")
        model._module = model.build_module(model.tokenizer.vocab_size)
        model._module.load_state_dict(torch.load(directory / "weights.pt", weights_only=True))
        return model
