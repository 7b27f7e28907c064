"""BLIP: the pretrained autoregressive baseline with its own captioning decoding.

Paper: Li et al., "BLIP: Bootstrapping Language-Image Pre-training for Unified Vision-Language
Understanding and Generation", ICML 2022. Upstream: github.com/salesforce/BLIP (BSD-3-Clause); the
implementation used is transformers' `BlipForConditionalGeneration` (Apache-2.0); weights
`Salesforce/blip-image-captioning-base` (BSD-3-Clause). Paradigm: autoregressive (a ViT image encoder
and a BERT decoder with cross-attention, generating left to right).

Variants:
  - `blip-base`: the released captioning checkpoint (hub id, a local save_pretrained directory, or a
    copy under $BENCH_WEIGHTS_DIR; see models/weights.py): BLIP base (ViT-B, CapFilt-L, 129M images)
    already fine-tuned on COCO captions, so never "zero-shot": the suites evaluate it as released and
    label it as the COCO captioner it is (on Flickr30k: transfer from COCO). Offline, creating it raises
    `WeightsNotFound` naming the remedy and `blip-tiny`.
    Why the suites have no "BLIP fine-tuned" row: fine-tuning must start from a pre-trained, not a
    COCO-fine-tuned, checkpoint, and BLIP's pre-trained captioning weights (`model_base_capfilt_large.pth`)
    are published only as the upstream repository's own .pth files; every BLIP captioning checkpoint on
    the Hugging Face hub in transformers' format (`Salesforce/blip-image-captioning-base`, `-large`) is
    the COCO-fine-tuned one. Fine-tuning that again would train on COCO twice. (GIT has one: the suites
    fine-tune it from `microsoft/git-base`.) Training `blip-base` stays possible for other datasets.
  - `blip-tiny`: the same architecture and tokenisation from a small config with random weights (64 px),
    trained from scratch (shapes suite, tests).

Decoding (BLIP's own captioning configs, `caption_coco.yaml`): images at 384x384 (the checkpoint's
processor: bicubic resize, CLIP mean/std), beam search with 3 beams, `max_length` 20 and `min_length` 5,
prompt "a picture of ". As in BLIP (and transformers' `generate`), both lengths count the whole decoder
sequence, [DEC] and the 3 prompt tokens included, so 1 to 16 tokens are generated ([SEP] included). `max_new_tokens`
/ `min_new_tokens` count generated tokens only and take precedence when given. The prompt is removed from
every returned caption (the generated ids after the prompt are decoded, and any leading repeat of the
prompt text is stripped too).

Fine-tuning follows BLIP's captioning fine-tuning: the target text is prompt + caption, cleaned by
BLIP's `pre_caption` (lower-cased, without .!"()*#:;~, at most 30 words) and cut at 40 tokens; [CLS] is
replaced by [DEC]; the loss is cross-entropy with label smoothing 0.1 over the caption tokens and [SEP]
only (never over the prompt or padding). Deviation: the logits are computed only at the positions that
carry a target (the same loss, far less work on CPU).

Error-propagation probes (bench/metrics/errprop.py; word positions are `errprop.words` positions):
  - `continue_from` forces the given words (as word pieces, so a word may be several tokens) after
    [DEC] + prompt and continues greedily under the same length limits as `caption` (the forced tokens
    count towards them, so a forced caption has the budget of the caption it perturbs). Prefixes that
    tokenise to different lengths are generated in separate groups (no padding: the decoder's absolute
    positions would shift under left padding). The returned text is the forced words and their
    continuation, prompt excluded; a leading repeat of the prompt is stripped only when nothing is
    forced (otherwise the caption starts with the caller's words, not with anything the model said).
  - `teacher_forced_words` runs [DEC] + prompt + caption through the decoder once (as in training) and
    marks a word correct iff every word piece of it is the argmax prediction at its position. Pieces
    are mapped to `errprop.words` words by character offsets, not by the tokenizer's `word_ids()`
    (BERT's pre-tokenizer makes "man's" three words, `errprop.words` one); pieces outside any word
    (punctuation, e.g. "," or "-") are not judged, and neither is [SEP].
  Both probes share one limitation of word-level positions: a caption whose text does not re-tokenise
  to the pieces the model generated ("man ' s", "red - ish" decoded from "man's", "red-ish") is forced
  or scored as the re-tokenised pieces of its words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from bench.api import Captioner, CaptionerConfig, Generation, Knob, VariantInfo
from bench.metrics.errprop import WORD
from models.autoregressive import AUTOREGRESSIVE_PROBES, ForcedPrefixProbes, beam_knob, length_knobs
from models.counting import counted_calls, tokens_before_end
from models.imaging import augment
from models.weights import (
    bert_vocab_dir,
    load_pretrained,
    load_pretrained_captioner,
    save_pretrained_captioner,
)


@dataclass
class BlipCaptionerConfig(CaptionerConfig):
    #: hub id or directory of a pretrained checkpoint; None builds the architecture below, random init.
    weights: str | None = "Salesforce/blip-image-captioning-base"
    # Architecture when `weights` is None (a checkpoint brings its own config and processor).
    image_size: int = 384
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
    max_tokens: int = 40  # [DEC] + prompt + caption + [SEP], as BLIP's decoder tokenisation
    label_smoothing: float = 0.1
    # Decoding defaults (BLIP's captioning settings).
    prompt: str = "a picture of "
    num_beams: int = 3
    max_length: int = 20
    min_length: int = 5


def pre_caption(caption: str, max_words: int) -> str:
    """BLIP's caption cleaning for training: lower-case, drop .!"()*#:;~, collapse spaces, cut words."""
    caption = re.sub(r"\s{2,}", " ", re.sub(r"([.!\"()*#:;~])", " ", caption.lower())).strip()
    return " ".join(caption.split(" ")[:max_words])


def strip_prompt(text: str, prompt: str) -> str:
    """`text` without any leading occurrence(s) of `prompt` (compared case- and space-insensitively)."""
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


class BlipCaptioner(ForcedPrefixProbes, Captioner):
    """BLIP image-grounded text decoder: pretrained (`weights`) or a small random-init configuration."""

    paradigm = "autoregressive"
    knobs = (beam_knob(), *length_knobs(),
             Knob("max_length", int, None, help="at most this many decoder tokens, [DEC] and prompt included"),
             Knob("min_length", int, None, help="at least this many decoder tokens, [DEC] and prompt included"),
             Knob("prompt", str, None, help="text prefix the caption continues (removed from the output)"))
    probes = AUTOREGRESSIVE_PROBES
    config_class = BlipCaptionerConfig
    config: BlipCaptionerConfig

    def __init__(self, config: BlipCaptionerConfig, module: torch.nn.Module | None = None,
                 processor: Any = None):
        super().__init__(config)
        if module is None or processor is None:
            module, processor = self._pretrained() if config.weights else self._from_scratch()
        self._module = module.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        text = module.config.text_config
        self.bos_id, self.sep_id, self.pad_id = text.bos_token_id, text.sep_token_id, text.pad_token_id

    def _pretrained(self):
        from transformers import AutoProcessor, BlipForConditionalGeneration

        source = self.config.weights
        module = load_pretrained(BlipForConditionalGeneration.from_pretrained, source, "blip-tiny",
                                 dtype=torch.float32)
        return module, load_pretrained(AutoProcessor.from_pretrained, source, "blip-tiny")

    def _from_scratch(self):
        from transformers import (
            AutoTokenizer,
            BlipConfig,
            BlipForConditionalGeneration,
            BlipImageProcessorPil,
            BlipProcessor,
        )

        c = self.config
        tokenizer = AutoTokenizer.from_pretrained(str(bert_vocab_dir()))
        # BLIP's init_tokenizer: bert-base-uncased + [DEC] (bos, id 30522) + [ENC] (id 30523).
        tokenizer.add_special_tokens({"bos_token": "[DEC]"})
        tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
        image_processor = BlipImageProcessorPil(size={"height": c.image_size, "width": c.image_size})
        config = BlipConfig(
            vision_config=dict(
                image_size=c.image_size, patch_size=c.patch_size, hidden_size=c.vision_width,
                intermediate_size=4 * c.vision_width, num_hidden_layers=c.vision_layers,
                num_attention_heads=c.vision_heads, initializer_range=0.02,  # HF's 1e-10 suits loading only
            ),
            text_config=dict(
                vocab_size=len(tokenizer), hidden_size=c.text_width, encoder_hidden_size=c.vision_width,
                intermediate_size=4 * c.text_width, num_hidden_layers=c.text_layers,
                num_attention_heads=c.text_heads,
                bos_token_id=tokenizer.bos_token_id, sep_token_id=tokenizer.sep_token_id,
                pad_token_id=tokenizer.pad_token_id, label_smoothing=c.label_smoothing,
            ),
        )
        module = BlipForConditionalGeneration(config)
        return module, BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)

    @property
    def module(self) -> torch.nn.Module:
        return self._module

    # -- data ---------------------------------------------------------------------------------
    def preprocess(self, image: Image.Image, train: bool = False) -> torch.Tensor:
        """The checkpoint's own image processor (size, resample, mean/std); crops only if asked."""
        if train:
            image = augment(image, self.config.augment)
        return self.processor.image_processor(image, return_tensors="pt")["pixel_values"][0]

    def _prefix(self, prompt: str | None) -> list[int]:
        """[DEC] + the prompt's word pieces: the decoder input that generation continues."""
        prompt = self.config.prompt if prompt is None else prompt
        return [self.bos_id, *self.tokenizer(prompt, add_special_tokens=False)["input_ids"]]

    def collate(self, images: list[torch.Tensor], captions: list[str]) -> dict[str, torch.Tensor]:
        """[DEC] prompt caption [SEP] [PAD]..; labels hide the prompt and padding from the loss."""
        text = [self.config.prompt + pre_caption(c, self.config.max_words) for c in captions]
        enc = self.tokenizer(text, padding="longest", truncation=True, max_length=self.config.max_tokens,
                             return_tensors="pt")
        ids = enc["input_ids"].clone()
        ids[:, 0] = self.bos_id
        labels = ids.masked_fill(enc["attention_mask"] == 0, -100)
        labels[:, : len(self._prefix(None))] = -100
        return {"pixel_values": torch.stack(images), "input_ids": ids,
                "attention_mask": enc["attention_mask"], "labels": labels}

    # -- training -----------------------------------------------------------------------------
    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Label-smoothed next-token cross-entropy over the caption tokens (the prompt is context only).

        Equal to `module(**batch).loss` with `label_smoothing` set, but the vocabulary projection runs
        only where a target exists.
        """
        m = self.module
        image_embeds = m.vision_model(pixel_values=batch["pixel_values"]).last_hidden_state
        hidden = m.text_decoder.bert(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
            encoder_hidden_states=image_embeds, is_decoder=True,
        ).last_hidden_state
        targets = batch["labels"][:, 1:]
        keep = targets != -100
        logits = m.text_decoder.cls(hidden[:, :-1][keep])
        return F.cross_entropy(logits.float(), targets[keep], label_smoothing=self.config.label_smoothing)

    # -- inference ----------------------------------------------------------------------------
    def default_decoding(self) -> dict[str, Any]:
        c = self.config
        return {"num_beams": c.num_beams, "max_length": c.max_length, "min_length": c.min_length,
                "prompt": c.prompt}

    @torch.no_grad()
    def generate_ids(self, pixel_values: torch.Tensor, num_beams: int | None = None,
                     max_length: int | None = None, min_length: int | None = None,
                     max_new_tokens: int | None = None, min_new_tokens: int | None = None,
                     prompt: str | None = None) -> torch.Tensor:
        """Generated token ids after the prompt, (batch, length), padded with [PAD] after [SEP]."""
        c = self.config
        prefix = self._prefix(prompt)
        lengths: dict[str, int] = {}
        if max_new_tokens is not None:
            lengths["max_new_tokens"] = max_new_tokens
        else:
            lengths["max_length"] = c.max_length if max_length is None else max_length
        if min_new_tokens is not None:
            lengths["min_new_tokens"] = min_new_tokens
        else:
            lengths["min_length"] = c.min_length if min_length is None else min_length
        # transformers' BLIP generate replaces the first id by [DEC] and drops the last (the [SEP]
        # of a tokenised prompt), so the prompt goes in as [DEC] prompt [SEP].
        input_ids = torch.tensor([[*prefix, self.sep_id]] * len(pixel_values), device=pixel_values.device)
        self.module.eval()
        out = self.module.generate(
            pixel_values=pixel_values, input_ids=input_ids, num_beams=num_beams or c.num_beams,
            do_sample=False, **lengths,
        )
        return out[:, len(prefix):]

    def caption(self, pixel_values: torch.Tensor, **decoding: Any) -> list[str]:
        """Captions without the prompt; knobs: num_beams, max_length, min_length, max_new_tokens,
        min_new_tokens, prompt (defaults: `default_decoding()`)."""
        return self.generate(pixel_values, **decoding).captions

    def generate(self, pixel_values: torch.Tensor, **decoding: Any) -> Generation:
        """Captions with the text-decoder passes actually run and the tokens generated before [SEP]
        (the prompt not counted; the image encoder's one pass is not a decoder pass)."""
        prompt = decoding.get("prompt")
        prompt = self.config.prompt if prompt is None else prompt
        with counted_calls(self.module.text_decoder) as passes:
            ids = self.generate_ids(pixel_values, **decoding)
        texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        return Generation([strip_prompt(t, prompt) for t in texts], [passes[0]] * len(ids),
                          tokens_before_end(ids, {self.sep_id}))

    # -- error-propagation probes -------------------------------------------------------------
    @torch.no_grad()
    def continue_from(self, pixel_values: torch.Tensor, prefixes: list[list[str]],
                      max_length: int | None = None, min_length: int | None = None,
                      max_new_tokens: int | None = None, min_new_tokens: int | None = None,
                      prompt: str | None = None, **unused: Any) -> list[str]:
        """Greedy captions that start with the forced words `prefixes[i]` (one list per image).

        Always greedy (any `num_beams` is ignored). Lengths mean what they mean in `caption`:
        `max_length`/`min_length` count the whole decoder sequence, `max_new_tokens`/`min_new_tokens`
        everything after the prompt, so the forced pieces use up part of the budget and a caption forced
        with the first words of its own greedy caption comes out unchanged. A prefix at or over the
        budget is returned as it is.
        """
        c = self.config
        prompt = c.prompt if prompt is None else prompt
        start = self._prefix(prompt)
        forced = [self.tokenizer(" ".join(p), add_special_tokens=False)["input_ids"] for p in prefixes]
        out: list[str] = [""] * len(forced)
        self.module.eval()
        for width, rows in groups_by_length(forced).items():
            done = len(start) + width  # tokens already in the sequence when generation starts
            lengths: dict[str, int] = {}
            if max_new_tokens is not None:
                lengths["max_new_tokens"] = max_new_tokens - width
            else:
                lengths["max_new_tokens"] = (c.max_length if max_length is None else max_length) - done
            if min_new_tokens is not None:
                lengths["min_new_tokens"] = max(0, min_new_tokens - width)
            else:
                lengths["min_length"] = c.min_length if min_length is None else min_length
            if lengths["max_new_tokens"] <= 0:  # transformers refuses 0; nothing is left to generate
                ids = torch.tensor([forced[n] for n in rows], dtype=torch.long).reshape(len(rows), width)
            else:
                # As in generate_ids: transformers' BLIP generate drops the last id, hence the [SEP].
                input_ids = torch.tensor([[*start, *forced[n], self.sep_id] for n in rows],
                                         device=pixel_values.device)
                ids = self.module.generate(
                    pixel_values=pixel_values[rows], input_ids=input_ids, num_beams=1, do_sample=False,
                    **lengths,
                )[:, len(start):]
            for n, text in zip(rows, self.tokenizer.batch_decode(ids, skip_special_tokens=True), strict=True):
                out[n] = " ".join(text.split()) if width else strip_prompt(text, prompt)
        return out

    @torch.no_grad()
    def teacher_forced_words(self, pixel_values: torch.Tensor, captions: list[str],
                             batch_size: int = 32) -> list[list[bool]]:
        """Per `errprop.words` word of each caption: is every word piece of it the decoder's argmax given
        the image, [DEC] + prompt and the true pieces before it (one forward pass, as in training)?

        Batches of `batch_size` images bound the memory of a long call (the errprop phase passes all
        its images at once).
        """
        start = self._prefix(None)
        out: list[list[bool]] = []
        m = self.module.eval()
        for b in range(0, len(captions), batch_size):
            encoded = [word_pieces(self.tokenizer, text) for text in captions[b: b + batch_size]]
            rows = [[*start, *ids] for ids, _ in encoded]
            width = max(len(r) for r in rows)
            input_ids = torch.tensor([r + [self.pad_id] * (width - len(r)) for r in rows],
                                     device=pixel_values.device)
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=pixel_values.device)
            image_embeds = m.vision_model(pixel_values=pixel_values[b: b + batch_size]).last_hidden_state
            hidden = m.text_decoder.bert(input_ids=input_ids, attention_mask=mask,
                                         encoder_hidden_states=image_embeds, is_decoder=True).last_hidden_state
            # Position j predicts piece j + 1; only caption pieces are judged (the prompt is given).
            targets, keep = input_ids[:, 1:], mask[:, 1:].bool()
            keep[:, : len(start) - 1] = False
            predicted = torch.full_like(targets, -1)
            predicted[keep] = m.text_decoder.cls(hidden[:, :-1][keep]).argmax(-1)
            hits = (predicted == targets)[:, len(start) - 1:].tolist()
            out.extend(words_correct(h, pieces) for h, (_, pieces) in zip(hits, encoded, strict=True))
        return out

    def decode_cost(self, num_beams: int | None = None, max_length: int | None = None,
                    max_new_tokens: int | None = None, prompt: str | None = None,
                    num_tokens: float | None = None, min_length: int | None = None,
                    min_new_tokens: int | None = None) -> int:
        """Decoder evaluations per caption: generated tokens x beams.

        The generated tokens are the maximum allowed (`max_new_tokens`, else `max_length` minus [DEC] and
        the prompt), an upper bound; pass `num_tokens` (the actual mean generated length) for the actual
        cost. The one image-encoder pass and the prompt's single parallel pass are not counted.
        Minimum lengths do not change the bound; an unknown knob is a TypeError, as in `caption`.
        """
        beams = num_beams or self.config.num_beams
        if num_tokens is None:
            if max_new_tokens is not None:
                num_tokens = max_new_tokens
            else:
                total = self.config.max_length if max_length is None else max_length
                num_tokens = max(0, total - len(self._prefix(prompt)))
        return int(round(num_tokens * beams))

    # -- persistence --------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """A save_pretrained directory (model + processor), usable as `weights`, plus this config."""
        save_pretrained_captioner(self.module, self.processor, self.config, directory)

    @classmethod
    def load(cls, directory: Path) -> BlipCaptioner:
        """Restore a `save` directory (or any BLIP save_pretrained directory, with blip-base's settings)."""
        from transformers import BlipForConditionalGeneration

        config, module, processor = load_pretrained_captioner(
            cls, directory, "blip-base", BlipForConditionalGeneration.from_pretrained, "blip-tiny")
        return cls(config, module=module, processor=processor)


BlipCaptioner.variants = {
    "blip-base": BlipCaptionerConfig(),
    "blip-tiny": BlipCaptionerConfig(
        weights=None, image_size=64, patch_size=8, vision_width=128, vision_layers=2, vision_heads=4,
        text_width=128, text_layers=2, text_heads=4, max_tokens=32,
    ),
}
BlipCaptioner.info = {
    "blip-base": VariantInfo("129M images", "BLIP base, captioning checkpoint", "224M"),
    "blip-tiny": VariantInfo("none", "BLIP architecture, small config, random init"),
}
