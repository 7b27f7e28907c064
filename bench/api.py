"""The contracts between the harness, the captioners and the tasks.

Everything here is light (no torch at import time) so that `bench list` and config validation work
without a GPU stack. A captioner plugin subclasses `Captioner`; a dataset plugin subclasses `Task`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

# DTYPES, STACKS and StackError are re-exported: the stacks are part of the captioner contract.
from bench.stacks import DTYPES, STACKS, InferenceStacks, StackError  # noqa: F401

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

#: A captioner's paradigm is a free label it declares (e.g. "autoregressive", "diffusion",
#: "reference"); the harness never branches on it: it reads the knobs and probes below instead.
Paradigm = str
SPLITS = ("train", "val", "test")

#: The probes a captioner may implement (declared in `Captioner.probes`); the phases use what is there.
PROBE_RAW = "raw"  # caption_raw: output before any de-duplication post-processing
PROBE_INJECTION = "injection"  # caption_with_injection: a wrong word put in part-way, generation goes on
PROBE_TEACHER_FORCING = "teacher_forcing"  # teacher_forced_words: per-word argmax hits given true words
PROBE_SAMPLING = "sampling"  # sample_captions: k captions per image by each of `sampling_methods`
PROBE_FORCED_LENGTH = "forced_length"  # forced_length_decoding: every caption exactly N tokens
PROBES = (PROBE_RAW, PROBE_INJECTION, PROBE_TEACHER_FORCING, PROBE_SAMPLING, PROBE_FORCED_LENGTH)

#: A word, as every probe counts positions: lower-cased alphanumerics, an apostrophe suffix kept.
WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    """The words of a caption (punctuation dropped): the positions the probes' `position` refers to."""
    return WORD.findall(text.lower())


@dataclass(frozen=True)
class Knob:
    """One decoding knob a captioner declares (timm keeps metadata beside the model; so do we).

    The harness reads these: config validation (`decoding:` keys and values), the eval sweep's default
    grid, the latency phase's sweeps (knobs with `cost=True`), and the labels of tables and figures.
    """

    name: str
    type: type  # int | float | bool | str
    default: Any
    sweep: tuple[Any, ...] = ()  # values swept for quality-vs-cost curves (latency, eval sweeps)
    cost: bool = False  # changes the decoding cost (steps, beams): swept by the latency phase
    label: str = ""  # axis label in figures (default: the name)
    help: str = ""
    choices: tuple[Any, ...] = ()  # accepted values when the knob is categorical

    def check(self, value: Any, where: str = "decoding") -> Any:
        """`value` converted to the knob's type; a ValueError naming the knob and what is accepted."""
        if self.choices and value not in self.choices:
            raise ValueError(f"{where}.{self.name}: {value!r} is not accepted; accepted: "
                             f"{', '.join(map(repr, self.choices))}")
        if self.type is bool:
            if isinstance(value, bool):
                return value
        elif self.type is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif self.type is float:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
        elif isinstance(value, self.type):
            return value
        raise ValueError(f"{where}.{self.name}: expected {self.type.__name__}, got {value!r}")


@dataclass(frozen=True)
class VariantInfo:
    """What a report says about a registered variant besides its paradigm."""

    pretraining: str = "none"  # data seen before this benchmark's own training ("none": random init)
    description: str = ""
    parameters: str = ""  # the approximate size when known without building it, e.g. "312M trainable"


@dataclass
class Generation:
    """Captions with what producing them actually cost (per caption, as run, not an upper bound)."""

    captions: list[str]
    network_evals: list[int] | None = None  # network forward passes per caption
    tokens: list[int] | None = None  # tokens generated per caption


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


class Captioner(InferenceStacks, ABC):
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
    #: registered variant name -> what reports say about it (pre-training data, size).
    info: ClassVar[dict[str, VariantInfo]] = {}
    #: whether the shared gradient-based training loop applies (trivial references just `prepare`).
    trainable: ClassVar[bool] = True
    #: the decoding knobs `caption` accepts; anything else is an error before any work.
    knobs: ClassVar[tuple[Knob, ...]] = ()
    #: the probes implemented (PROBES); a phase skips, and records as unavailable, what is absent.
    probes: ClassVar[frozenset[str]] = frozenset()
    #: injection probe: the points of generation (fraction done, 0 = start, 1 = end) an injection is
    #: made at, each its own curve; () = one point only (autoregressive: the word is forced when reached).
    #: None among them: that point (the word put in when generation reaches it), beside the fractions.
    injection_levels: ClassVar[tuple[float | None, ...]] = ()
    #: sampling probe: the methods of `sample_captions`, e.g. ("seeds",) or ("nucleus", "beams").
    sampling_methods: ClassVar[tuple[str, ...]] = ()
    #: decoding overrides each errprop probe also runs under, each its own curve (e.g. Back&Refine off).
    probe_settings: ClassVar[tuple[dict[str, Any], ...]] = ({},)
    def __init__(self, config: CaptionerConfig):
        self.config = config
        self._device = "cpu"

    # -- self-description ---------------------------------------------------------------------
    @classmethod
    def knob(cls, name: str) -> Knob:
        for k in cls.knobs:
            if k.name == name:
                return k
        raise KeyError(name)

    @classmethod
    def check_decoding(cls, decoding: dict[str, Any], where: str = "decoding") -> dict[str, Any]:
        """Validate decoding settings against `knobs`: unknown names and wrong types are a ValueError
        that lists the accepted knobs. Returns the settings converted to the knobs' types."""
        known = {k.name: k for k in cls.knobs}
        unknown = sorted(set(decoding) - set(known))
        if unknown:
            import difflib

            hints = [f"{u!r} (did you mean {c[0]!r}?)" if (c := difflib.get_close_matches(u, known, n=1))
                     else repr(u) for u in unknown]
            raise ValueError(f"{where}: unknown decoding knob(s) {', '.join(hints)} for {cls.__name__}; "
                             f"accepted: {', '.join(sorted(known)) or 'none'}")
        return {name: known[name].check(value, where) for name, value in decoding.items()}

    @classmethod
    def variant_info(cls, name: str) -> VariantInfo:
        return cls.info.get(name, VariantInfo(pretraining="unknown"))

    @classmethod
    def describe(cls, name: str) -> dict[str, Any]:
        """Everything a result file and a report need to know about variant `name`, JSON-ready."""
        info = cls.variant_info(name)
        return {"paradigm": cls.paradigm, "pretraining": info.pretraining, "description": info.description,
                "parameters": info.parameters, "trainable": cls.trainable, "probes": sorted(cls.probes),
                "injection_levels": list(cls.injection_levels), "sampling_methods": list(cls.sampling_methods),
                "stacks": list(cls.stacks), "dtypes": list(cls.dtypes), "knobs": [
                    {"name": k.name, "type": k.type.__name__, "default": k.default, "sweep": list(k.sweep),
                     "cost": k.cost, "label": k.label or k.name} for k in cls.knobs]}

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

    @property  # default: random unless the config's `augment` says "none"
    def random_augmentation(self) -> bool:
        """Whether `preprocess(image, train=True)` is random (else training caches it: bench/train_data.py)."""
        return getattr(getattr(self, "config", None), "augment", "random") != "none"

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

    def generate(self, pixel_values: torch.Tensor, **decoding: Any) -> Generation:
        """Captions with their actual cost; default: `caption` and `decode_cost` (override where the
        cost depends on the output, e.g. autoregressive decoding that stops at the end token)."""
        captions = self.caption(pixel_values, **decoding)
        return Generation(captions, [self.decode_cost(**decoding)] * len(captions), None)

    # -- probes (declared in `probes`; bench/metrics/errprop.py, bench/metrics/diversity.py) ----
    # Word positions are `words` positions (above; bench.metrics.errprop uses the same), so every
    # paradigm shares axes.

    def probe_decoding(self, decoding: dict[str, Any]) -> dict[str, Any]:
        """The decoding the injection probe and its uninjected baseline run with (default: as given;
        autoregressive models decode greedily there, so the forced word is the only difference)."""
        return dict(decoding)

    def caption_raw(self, pixel_values: torch.Tensor, **decoding: Any) -> list[str]:
        """Probe `raw`: captions as the network produced them, before any de-duplication."""
        raise NotImplementedError(f"{type(self).__name__} does not declare the 'raw' probe")

    def caption_with_injection(self, pixel_values: torch.Tensor, captions: list[str], position: int,
                               words: list[str], level: float | None = None, **decoding: Any) -> list[str]:
        """Probe `injection`: for each image i, its uninjected caption `captions[i]` (made with
        `probe_decoding`) has word `position` replaced by `words[i]` part-way through generation,
        and generation goes on (the same noise draws, for diffusion). `level` is one of
        `injection_levels` (fraction of generation done when the word is put in), or None.
        Autoregressive: the words before `position` and the new word are forced, then greedy.
        With `words[i]` the original word this is the probe's control (its own noise floor)."""
        raise NotImplementedError(f"{type(self).__name__} does not declare the 'injection' probe")

    def teacher_forced_words(self, pixel_values: torch.Tensor, captions: list[str]) -> list[list[bool]]:
        """Probe `teacher_forcing`: per word of each caption, whether the model's argmax prediction
        given the true preceding words is that word."""
        raise NotImplementedError(f"{type(self).__name__} does not declare the 'teacher_forcing' probe")

    def sample_captions(self, pixel_values: torch.Tensor, k: int, method: str, seed: int = 0,
                        **decoding: Any) -> list[list[str]]:
        """Probe `sampling`: k captions per image by `method` (one of `sampling_methods`), image-major."""
        raise NotImplementedError(f"{type(self).__name__} does not declare the 'sampling' probe")

    def forced_length_decoding(self, tokens: int) -> dict[str, Any]:
        """Probe `forced_length`: decoding overrides that make every caption exactly `tokens` tokens
        long (latency against generated length, LaDiC's figure 2a)."""
        raise NotImplementedError(f"{type(self).__name__} does not declare the 'forced_length' probe")

    def decode_cost(self, **decoding: Any) -> int:
        """Network evaluations per caption for these decoding settings (0 for non-neural references)."""
        return 0

    def default_decoding(self) -> dict[str, Any]:
        """The decoding settings used for the main quality numbers."""
        return {}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters()) if self.trainable else 0

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
