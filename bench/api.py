"""The contracts between the harness, the captioners and the tasks.

Everything here is light (no torch at import time) so that `bench list` and config validation work
without a GPU stack. A captioner plugin subclasses `Captioner`; a dataset plugin subclasses `Task`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

Paradigm = Literal["autoregressive", "diffusion", "reference"]
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    """One image with its reference captions.

    The image is held as a path and decoded on demand (`load_image`), so a split of 100k samples stays
    small, pickles cheaply to DataLoader and Ray workers, and decoding happens where the loader runs.
    """

    image_id: str
    image_path: Path
    references: tuple[str, ...]

    def load_image(self) -> Image.Image:
        """Decode the image as RGB. Raises OSError (or a PIL error) for a missing or corrupt file."""
        from PIL import Image

        try:
            with Image.open(self.image_path) as im:
                return im.convert("RGB")
        except (Image.DecompressionBombError, ValueError, SyntaxError) as err:
            # Every unreadable image is an OSError to callers, who skip and count it.
            raise OSError(f"{self.image_path}: {err}") from err


@dataclass(frozen=True)
class TaskInfo:
    """Metadata every task reports: what it is and where its files come from."""

    name: str
    version: str
    description: str
    licence: str
    source: str
    sizes: dict[str, int] = field(default_factory=dict)


class Task(ABC):
    """A captioning dataset with train/val/test splits.

    `samples(split)` yields only samples whose image file is present; images listed in the split file
    but missing on disk are reported by `missing(split)` and still count for scoring via
    `references(split)`, which is read from the split file alone.
    """

    name: ClassVar[str]

    @abstractmethod
    def info(self) -> TaskInfo: ...

    @abstractmethod
    def samples(self, split: str) -> list[Sample]: ...

    def references(self, split: str) -> dict[str, list[str]]:
        """image_id -> reference captions, for the scorer."""
        return {s.image_id: list(s.references) for s in self.samples(split)}

    def missing(self, split: str) -> list[str]:
        """Image ids listed in the split whose image file is absent (default: none)."""
        return []

    def splits(self) -> dict[str, list[Sample]]:
        return {split: self.samples(split) for split in SPLITS}


@dataclass
class CaptionerConfig:
    """Base of every captioner's config dataclass (one per model family).

    `variant` is the registered name the config was made for; families add their own fields.
    """

    variant: str = ""

    def replace(self, **overrides: Any) -> CaptionerConfig:
        """A copy with fields overridden; an unknown field is a clear error naming the valid ones."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(
                f"{type(self).__name__} has no field(s) {unknown}; valid fields: {sorted(names)}"
            )
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Captioner(ABC):
    """An image captioner the harness can train, run and time.

    The life of a captioner inside a job:
      1. `create(config)` builds it (random init, or pretrained weights named in the config);
      2. `prepare(train_samples)` fits whatever is derived from training data (a tokenizer, latent
         statistics, a caption index) before any training step;
      3. the shared training loop (bench/train.py) calls `collate` and `training_loss` on batches of
         (preprocessed image, caption) pairs and optimises `module`'s parameters;
      4. `caption(pixel_values, **decoding)` generates captions for a batch of preprocessed images.

    Decoding knobs (`steps`, `num_beams`, `max_new_tokens`, ...) are arguments, never state, so one
    trained model can be swept over them.
    """

    paradigm: ClassVar[Paradigm]
    config_class: ClassVar[type[CaptionerConfig]] = CaptionerConfig
    #: registered variant name -> its config. The registry points at the class; this is the table.
    variants: ClassVar[dict[str, CaptionerConfig]] = {}
    #: whether the shared gradient-based training loop applies (trivial references just `prepare`).
    trainable: ClassVar[bool] = True

    def __init__(self, config: CaptionerConfig):
        self.config = config
        self._device = "cpu"

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def variant_config(cls, name: str, **overrides: Any) -> CaptionerConfig:
        if name not in cls.variants:
            raise KeyError(f"{cls.__name__} has no variant {name!r}; variants: {sorted(cls.variants)}")
        return cls.variants[name].replace(variant=name, **overrides)

    @classmethod
    def from_config(cls, config: CaptionerConfig) -> Captioner:
        return cls(config)

    # -- data ---------------------------------------------------------------------------------
    def prepare(self, train: Sequence[Sample]) -> None:  # noqa: B027 - optional hook
        """Fit data-derived state (tokenizer, statistics) from the training split. Default: nothing."""

    @abstractmethod
    def preprocess(self, image: Image.Image, train: bool = False) -> torch.Tensor:
        """PIL image -> tensor. Runs in DataLoader workers; `train` enables augmentation."""

    def collate(self, images: list[torch.Tensor], captions: list[str]) -> dict[str, torch.Tensor]:
        """Stack images and tokenize captions into a training batch."""
        raise NotImplementedError(f"{type(self).__name__} is not trainable")

    # -- training -----------------------------------------------------------------------------
    @property
    def module(self) -> torch.nn.Module:
        """The torch module holding every trainable parameter (checkpointed by the training loop)."""
        raise NotImplementedError(f"{type(self).__name__} has no torch module")

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} is not trainable")

    def to(self, device: str | torch.device) -> Captioner:
        """Move the module (if built yet: `prepare` may build it) and remember the device."""
        self._device = str(device)
        if self.trainable and self.module_ready():
            self.module.to(device)
        return self

    def module_ready(self) -> bool:
        """Whether `module` exists yet (captioners that build it in `prepare` override this)."""
        return True

    @property
    def device(self) -> torch.device:
        import torch

        return torch.device(self._device)

    # -- inference ----------------------------------------------------------------------------
    @abstractmethod
    def caption(self, pixel_values: torch.Tensor, **decoding: Any) -> list[str]:
        """Captions for a batch of preprocessed images (stacked `preprocess` outputs)."""

    def caption_images(self, images: Iterable[Image.Image], **decoding: Any) -> list[str]:
        """Convenience: preprocess PIL images and caption them."""
        import torch

        batch = torch.stack([self.preprocess(im, train=False) for im in images])
        return self.caption(batch.to(self.device), **decoding)

    # -- probes for error-propagation measurements (bench/metrics/errprop.py) -------------------
    # Word-level, so both paradigms share axes. A captioner that lacks a probe simply gets no curve
    # for it (the errprop phase records which probes were unavailable).

    def caption_raw(self, pixel_values: torch.Tensor, **decoding: Any) -> list[str]:
        """Captions before any de-duplication post-processing (default: `caption`)."""
        return self.caption(pixel_values, **decoding)

    def continue_from(self, pixel_values: torch.Tensor, prefixes: list[list[str]],
                      **decoding: Any) -> list[str]:
        """Autoregressive: greedy captions that start with the given forced words (error injection)."""
        raise NotImplementedError

    def teacher_forced_words(self, pixel_values: torch.Tensor, captions: list[str]) -> list[list[bool]]:
        """Autoregressive: per word of each caption, whether the model's argmax prediction given the
        true preceding words (teacher forcing) is that word."""
        raise NotImplementedError

    def caption_with_injection(self, pixel_values: torch.Tensor, position: int, word: str,
                               at_fraction: float, **decoding: Any) -> list[str]:
        """Diffusion: overwrite `position`'s latent with `word`'s latent after `at_fraction` of the
        sampling steps, then finish sampling."""
        raise NotImplementedError

    def decode_cost(self, **decoding: Any) -> int:
        """Network evaluations per caption for these decoding settings (0 for non-neural references)."""
        return 0

    def default_decoding(self) -> dict[str, Any]:
        """The decoding settings used for the main quality numbers."""
        return {}

    def num_parameters(self) -> int:
        if not self.trainable:
            return 0
        return sum(p.numel() for p in self.module.parameters())

    # -- persistence --------------------------------------------------------------------------
    @abstractmethod
    def save(self, directory: Path) -> None: ...

    @classmethod
    @abstractmethod
    def load(cls, directory: Path) -> Captioner: ...


def stable_hash(payload: Any, length: int = 12) -> str:
    """Content hash of a JSON-serialisable payload (key order and float formatting made canonical)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
