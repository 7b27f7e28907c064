"""What the transformers-backed pretrained captioners (BLIP, GIT) share: a ViT image encoder and a
BERT-vocabulary text decoder behind transformers' `generate`, loaded from a checkpoint or built small.

`PretrainedCaptioner` holds the behaviour both have: the checkpoint's own image processor, the training
batch and its label-smoothed loss (logits only where a target exists), generation through the module's
`generate` with its decoder passes counted, the error-propagation probes (`continue_from`,
`teacher_forced_words`), `decode_cost`, and save/load as a save_pretrained directory. A subclass says
only what differs:
  - `module_class` (transformers' class name), `base_variant` / `tiny_variant`, `_from_scratch`;
  - `_special_ids` (the decoder start, end and padding ids of its module config);
  - `training_text` (the target text, e.g. BLIP's prompt + `pre_caption`);
  - `_text_hidden` / `_project` (the decoder's hidden states at the text positions, the vocabulary layer);
  - `counted_module` (what runs once per generation step);
  - `length_defaults` (whether its default lengths count the whole sequence or generated tokens only);
  - `_options` (its own knobs: BLIP's `prompt`, GIT's `length_penalty`; any other is a TypeError).
The decoder input generation continues is the start token followed by the prompt's word pieces (no
prompt: the start token alone), so "lengths of the whole sequence" count both.

Both probes map word pieces to `bench.metrics.errprop.words` words by character offsets (see
`word_pieces`); prefixes that tokenise to different lengths are generated in separate unpadded groups
(the decoder's absolute positions would shift under left padding).
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from PIL import Image

from bench.api import Captioner, CaptionerConfig, Generation
from bench.metrics.errprop import WORD
from models.autoregressive import ForcedPrefixProbes, text_prefix
from models.counting import counted_calls, tokens_before_end
from models.hf_stack import weights_dtype
from models.imaging import augment
from models.weights import load_pretrained, load_pretrained_captioner, save_pretrained_captioner


@dataclass
class PretrainedCaptionerConfig(CaptionerConfig):
    #: hub id or directory of a pretrained checkpoint; None builds the architecture below, random init.
    weights: str | None = None
    # Architecture when `weights` is None (a checkpoint brings its own config and processor).
    image_size: int = 224
    patch_size: int = 16
    vision_width: int = 768
    vision_layers: int = 12
    vision_heads: int = 12
    text_width: int = 768
    text_layers: int = 12
    text_heads: int = 12
    # Training.
    augment: str = "none"  # none | crop | crop_flip (models/imaging.py)
    max_words: int = 30
    max_tokens: int = 40  # decoder tokens of a training caption, start and end included
    label_smoothing: float = 0.1
    # Decoding defaults (each family sets its own).
    num_beams: int = 1


def strip_prompt(text: str, prompt: str) -> str:
    """`text` without any leading occurrence(s) of `prompt` (compared case- and space-insensitively),
    its whitespace collapsed (an empty prompt only collapses whitespace)."""
    words, head = text.split(), prompt.lower().split()
    while head and [w.lower() for w in words[: len(head)]] == head:
        words = words[len(head):]
    return " ".join(words)


def word_pieces(tokenizer: Any, caption: str) -> tuple[list[int], list[list[int]]]:
    """The word-piece ids of `caption` (no special tokens) and, for each word of
    `bench.metrics.errprop.words(caption)`, the indices of the pieces that spell it.

    Pieces are matched to words by character offsets (a fast tokenizer's offset mapping) so that the
    words are exactly `errprop.words`' words; a piece outside every word (punctuation) belongs to none,
    and a word the tokenizer dropped entirely (control characters only) has no pieces.
    """
    text = caption.lower()  # errprop.words lower-cases first: match its spans on the same string
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    spans = [m.span() for m in WORD.finditer(text)]
    pieces: list[list[int]] = [[] for _ in spans]
    for t, (start, end) in enumerate(enc["offset_mapping"]):
        for w, (w_start, w_end) in enumerate(spans):
            if start < w_end and w_start < end:  # overlap: a piece may straddle words ("cafée" -> "cafee")
                pieces[w].append(t)
    return list(enc["input_ids"]), pieces


def words_correct(hits: list[bool], pieces: list[list[int]]) -> list[bool]:
    """Per word: are all its pieces hits? (A word without pieces cannot have been predicted.)"""
    return [bool(p) and all(hits[t] for t in p) for p in pieces]


def groups_by_length(rows: list[list[int]]) -> dict[int, list[int]]:
    """Row indices grouped by row length: each group decodes as one unpadded batch."""
    groups: dict[int, list[int]] = {}
    for n, row in enumerate(rows):
        groups.setdefault(len(row), []).append(n)
    return groups


class PretrainedCaptioner(ForcedPrefixProbes, Captioner):
    """A transformers captioner, pretrained (`weights`) or a small random-init configuration."""

    paradigm = "autoregressive"
    config_class = PretrainedCaptionerConfig
    config: PretrainedCaptionerConfig
    dtypes = ("fp32", "bf16")  # models/hf_stack.py
    # No compiled stack (a static KV cache, which transformers' generate compiles): in transformers 5.25
    # both fail with one; latency.json records this reason (Captioner.stack_record).
    stack_notes = {"compiled": "transformers' GIT and BLIP generate fail with a static KV cache "
                               "(StaticCache.update: index out of bounds, GIT: 'Tensors must have same "
                               "number of dimensions'), so generate cannot compile their decoding step"}
    #: transformers' model class (loaded by name, so importing this module does not import transformers).
    module_class: ClassVar[str]
    #: the variant whose settings a bare save_pretrained directory loads with, and the offline one.
    base_variant: ClassVar[str]
    tiny_variant: ClassVar[str]
    #: transformers' generate drops the last id of `input_ids` (BLIP's does: it expects a tokenised
    #: prompt ending in [SEP]), so the end id is appended to the decoder input.
    generate_drops_last: ClassVar[bool] = False

    def __init__(self, config: PretrainedCaptionerConfig, module: torch.nn.Module | None = None,
                 processor: Any = None):
        super().__init__(config)
        if module is None or processor is None:
            module, processor = self._pretrained() if config.weights else self._from_scratch()
        self._module = module.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.bos_id, self.end_id, self.pad_id = self._special_ids(module.config)

    # -- what a family defines ----------------------------------------------------------------
    @abstractmethod
    def _from_scratch(self) -> tuple[torch.nn.Module, Any]:
        """(module, processor) of the configured small architecture, random init."""

    @abstractmethod
    def _special_ids(self, module_config: Any) -> tuple[int, int, int]:
        """(decoder start, end, padding) token ids."""

    @abstractmethod
    def training_text(self, caption: str) -> str:
        """The text a training caption becomes before tokenisation ([CLS] ... [SEP] added by it)."""

    @abstractmethod
    def _text_hidden(self, pixel_values: torch.Tensor, input_ids: torch.Tensor,
                     attention_mask: torch.Tensor) -> torch.Tensor:
        """The decoder's last hidden states at the text positions, (batch, text length, width)."""

    @abstractmethod
    def _project(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits of hidden states."""

    @abstractmethod
    def counted_module(self) -> torch.nn.Module:
        """The module that runs once per generation step (its calls are the decoder passes)."""

    @abstractmethod
    def length_defaults(self) -> dict[str, int]:
        """The default maximum and minimum length: `max_length`/`min_length` (the whole decoder
        sequence) or `max_new_tokens`/`min_new_tokens` (generated tokens only)."""

    def _options(self, num_beams: int) -> tuple[str | None, dict[str, Any]]:
        """(prompt, extra `generate` arguments) from the family's own knobs (keyword arguments of the
        override; anything else is a TypeError). Prompt None: the default, `default_prompt`."""
        return None, {}

    @property
    def default_prompt(self) -> str:
        """Text the caption continues by default (removed from the output); "" = none."""
        return ""

    # -- construction -------------------------------------------------------------------------
    def _pretrained(self) -> tuple[torch.nn.Module, Any]:
        import transformers
        from transformers import AutoProcessor

        source = self.config.weights
        loader = getattr(transformers, self.module_class).from_pretrained
        module = load_pretrained(loader, source, self.tiny_variant, dtype=torch.float32)
        return module, load_pretrained(AutoProcessor.from_pretrained, source, self.tiny_variant)

    @property
    def module(self) -> torch.nn.Module:
        return self._module

    # -- data and training --------------------------------------------------------------------
    def preprocess(self, image: Image.Image, train: bool = False) -> torch.Tensor:
        """The checkpoint's own image processor (size, crop, resample, mean/std); crops only if asked."""
        if train:
            image = augment(image, self.config.augment)
        return self.processor.image_processor(image, return_tensors="pt")["pixel_values"][0]

    def _prefix(self, prompt: str | None = None) -> list[int]:
        """The decoder start + the prompt's word pieces: the decoder input that generation continues."""
        prompt = self.default_prompt if prompt is None else prompt
        return [self.bos_id, *(self.tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else [])]

    def collate(self, images: list[torch.Tensor], captions: list[str]) -> dict[str, torch.Tensor]:
        """start prompt caption [SEP] [PAD]..; labels hide the start, the prompt and padding from the loss."""
        text = [self.training_text(c) for c in captions]
        enc = self.tokenizer(text, padding="longest", truncation=True, max_length=self.config.max_tokens,
                             return_tensors="pt")
        ids = enc["input_ids"].clone()
        ids[:, 0] = self.bos_id  # BLIP's [DEC] replaces the tokenizer's [CLS]; GIT starts with [CLS] itself
        labels = ids.masked_fill(enc["attention_mask"] == 0, -100)
        labels[:, : len(self._prefix())] = -100
        return {"pixel_values": torch.stack(images), "input_ids": ids,
                "attention_mask": enc["attention_mask"], "labels": labels}

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Label-smoothed next-token cross-entropy over the caption tokens and [SEP].

        Equal to `module(**batch).loss` (with `label_smoothing` 0), but the vocabulary projection runs
        only where a target exists.
        """
        hidden = self._text_hidden(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
        targets = batch["labels"][:, 1:]
        keep = targets != -100
        logits = self._project(hidden[:, :-1][keep])
        return F.cross_entropy(logits.float(), targets[keep], label_smoothing=self.config.label_smoothing)

    # -- inference ----------------------------------------------------------------------------
    def _limit(self, bound: str, total: int | None, new: int | None) -> dict[str, int]:
        """`{bound}_new_tokens` if given, else `{bound}_length` if given, else the default; bound: max|min."""
        if new is not None:
            return {f"{bound}_new_tokens": new}
        if total is not None:
            return {f"{bound}_length": total}
        return {k: v for k, v in self.length_defaults().items() if k.startswith(bound)}

    def _decoder_input(self, rows: list[list[int]], device: torch.device) -> torch.Tensor:
        end = [self.end_id] if self.generate_drops_last else []
        return torch.tensor([[*row, *end] for row in rows], device=device)

    @torch.no_grad()
    def generate_ids(self, pixel_values: torch.Tensor, num_beams: int | None = None,
                     max_length: int | None = None, min_length: int | None = None,
                     max_new_tokens: int | None = None, min_new_tokens: int | None = None,
                     **knobs: Any) -> torch.Tensor:
        """Generated token ids after the start and prompt, (batch, length), padded with [PAD] after [SEP].
        `knobs`: the family's own (`_options`)."""
        beams = num_beams or self.config.num_beams
        prompt, options = self._options(beams, **knobs)
        prefix = self._prefix(prompt)
        lengths = {**self._limit("max", max_length, max_new_tokens), **self._limit("min", min_length, min_new_tokens)}
        self.module.eval()
        pixel_values = pixel_values.to(weights_dtype(self.module))  # bf16 stack: converted weights
        out = self.module.generate(
            pixel_values=pixel_values, input_ids=self._decoder_input([prefix] * len(pixel_values), pixel_values.device),
            num_beams=beams, do_sample=False, **options, **lengths,
        )
        return out[:, len(prefix):]

    def caption(self, pixel_values: torch.Tensor, **decoding: Any) -> list[str]:
        """Captions without the prompt; knobs: `knobs` (defaults: `default_decoding()`)."""
        return self.generate(pixel_values, **decoding).captions

    def generate(self, pixel_values: torch.Tensor, **decoding: Any) -> Generation:
        """Captions with the decoder passes actually run (`counted_module`'s calls) and the tokens
        generated before [SEP] (the prompt not counted)."""
        prompt = decoding.get("prompt")
        prompt = self.default_prompt if prompt is None else prompt
        with counted_calls(self.counted_module()) as passes:
            ids = self.generate_ids(pixel_values, **decoding)
        texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        return Generation([strip_prompt(t, prompt) for t in texts], [passes[0]] * len(ids),
                          tokens_before_end(ids, {self.end_id}))

    # -- error-propagation probes -------------------------------------------------------------
    def forced_prefix(self, caption: str, position: int, word: str) -> str:
        """The caption's text up to word `position`, then `word` (punctuation forced too)."""
        return text_prefix(caption, position, word)

    @torch.no_grad()
    def continue_from(self, pixel_values: torch.Tensor, prefixes: list[list[str] | str], num_beams: int | None = None,
                      max_length: int | None = None, min_length: int | None = None,
                      max_new_tokens: int | None = None, min_new_tokens: int | None = None,
                      **knobs: Any) -> list[str]:
        """Greedy captions that start with the forced words `prefixes[i]` (one list per image, or the
        text to force as it is: `forced_prefix`).

        Always greedy (`num_beams` is ignored). Lengths mean what they mean in `caption`: the forced
        pieces use up part of the budget, so a caption forced with the first words of its own greedy
        caption comes out unchanged. A prefix at or over the budget is returned as it is. The text is
        the forced words and their continuation, prompt excluded; a leading repeat of the prompt is
        stripped only when nothing is forced (otherwise the caption starts with the caller's words).
        """
        prompt, options = self._options(1, **knobs)
        prompt = self.default_prompt if prompt is None else prompt
        start = self._prefix(prompt)
        forced = [self.tokenizer(p if isinstance(p, str) else " ".join(p), add_special_tokens=False)["input_ids"]
                  for p in prefixes]
        out: list[str] = [""] * len(forced)
        self.module.eval()
        for width, rows in groups_by_length(forced).items():
            (longest, most), = self._limit("max", max_length, max_new_tokens).items()
            (shortest, least), = self._limit("min", min_length, min_new_tokens).items()
            # A whole-sequence maximum less the tokens already there (start, prompt, forced pieces).
            lengths = {"max_new_tokens": most - width - (0 if longest == "max_new_tokens" else len(start)),
                       shortest: max(0, least - width) if shortest == "min_new_tokens" else least}
            if lengths["max_new_tokens"] <= 0:  # transformers refuses 0; nothing is left to generate
                ids = torch.tensor([forced[n] for n in rows], dtype=torch.long).reshape(len(rows), width)
            else:
                ids = self.module.generate(
                    pixel_values=pixel_values[rows], num_beams=1, do_sample=False,
                    input_ids=self._decoder_input([[*start, *forced[n]] for n in rows], pixel_values.device),
                    **options, **lengths,
                )[:, len(start):]
            for n, text in zip(rows, self.tokenizer.batch_decode(ids, skip_special_tokens=True), strict=True):
                out[n] = " ".join(text.split()) if width else strip_prompt(text, prompt)
        return out

    @torch.no_grad()
    def teacher_forced_words(self, pixel_values: torch.Tensor, captions: list[str],
                             batch_size: int = 32) -> list[list[bool]]:
        """Per `errprop.words` word of each caption: is every word piece of it the decoder's argmax given
        the image, the start + default prompt and the true pieces before it (one forward pass, as in
        training)? The prompt and [SEP] are not judged, nor are pieces outside every word (punctuation).

        Batches of `batch_size` images bound the memory of a long call (the errprop phase passes all
        its images at once).
        """
        start = self._prefix()
        out: list[list[bool]] = []
        self.module.eval()
        for b in range(0, len(captions), batch_size):
            encoded = [word_pieces(self.tokenizer, text) for text in captions[b: b + batch_size]]
            rows = [[*start, *ids] for ids, _ in encoded]
            width = max(len(r) for r in rows)
            input_ids = torch.tensor([r + [self.pad_id] * (width - len(r)) for r in rows],
                                     device=pixel_values.device)
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=pixel_values.device)
            hidden = self._text_hidden(pixel_values[b: b + batch_size], input_ids, mask)
            # Position j predicts piece j + 1; only caption pieces are judged (the prompt is given).
            targets, keep = input_ids[:, 1:], mask[:, 1:].bool()
            keep[:, : len(start) - 1] = False
            predicted = torch.full_like(targets, -1)
            predicted[keep] = self._project(hidden[:, :-1][keep]).argmax(-1)
            hits = (predicted == targets)[:, len(start) - 1:].tolist()
            out.extend(words_correct(h, pieces) for h, (_, pieces) in zip(hits, encoded, strict=True))
        return out

    def decode_cost(self, num_beams: int | None = None, max_length: int | None = None,
                    min_length: int | None = None, max_new_tokens: int | None = None,
                    min_new_tokens: int | None = None, num_tokens: float | None = None, **knobs: Any) -> int:
        """Decoder evaluations per caption: generated tokens x beams.

        The generated tokens are the maximum allowed (`max_new_tokens`, else the whole-sequence maximum
        less the start and prompt), an upper bound; pass `num_tokens` (the actual mean generated length)
        for the actual cost. The image encoder's pass and the prompt's single parallel pass are not
        counted; minimum lengths and the family's other knobs do not change the bound (an unknown knob is
        a TypeError, as in `caption`).
        """
        beams = num_beams or self.config.num_beams
        prompt, _ = self._options(beams, **knobs)
        if num_tokens is None:
            (key, most), = self._limit("max", max_length, max_new_tokens).items()
            num_tokens = most if key == "max_new_tokens" else max(0, most - len(self._prefix(prompt)))
        return int(round(num_tokens * beams))

    # -- persistence --------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """A save_pretrained directory (model + processor), usable as `weights`, plus this config."""
        save_pretrained_captioner(self.module, self.processor, self.config, directory)

    @classmethod
    def load(cls, directory: Path) -> PretrainedCaptioner:
        """Restore a `save` directory (or any save_pretrained directory of the family, with the base
        variant's settings)."""
        import transformers

        loader = getattr(transformers, cls.module_class).from_pretrained
        config, module, processor = load_pretrained_captioner(cls, directory, cls.base_variant, loader,
                                                              cls.tiny_variant)
        return cls(config, module=module, processor=processor)
