"""GIT: the pretrained decoder-only autoregressive baseline, with beam search as in its repository.

Paper: Wang et al., "GIT: A Generative Image-to-text Transformer for Vision and Language", TMLR 2022.
Upstream: github.com/microsoft/GenerativeImage2Text (MIT); the implementation used is transformers'
`GitForCausalLM` (Apache-2.0); weights `microsoft/git-base-coco` (MIT), GIT-base fine-tuned on COCO.
Paradigm: autoregressive (a CLIP ViT image encoder whose tokens prefix a single BERT-sized decoder: image
tokens attend each other, text tokens attend the image and the text before them).

Variants:
  - `git-base`: the COCO-fine-tuned checkpoint (hub id, a local save_pretrained directory, or a copy
    under $BENCH_WEIGHTS_DIR; see models/weights.py), evaluated as released (a COCO captioner, not
    zero-shot). The suites' fine-tuned GIT row starts from the pre-trained, not COCO-fine-tuned,
    checkpoint instead: `overrides: {weights: microsoft/git-base}`. Offline, creating it raises
    `WeightsNotFound` naming the remedy and `git-tiny`.
  - `git-tiny`: the same architecture and tokenisation (bert-base-uncased WordPiece) from a small config
    with random weights (64 px), trained from scratch (shapes suite, tests).

Preprocessing: the checkpoint's own processor (CLIPImageProcessor: bicubic resize of the shorter side to
224, centre crop 224, CLIP mean/std).

Decoding (the repository's `get_git_model`: `GeneratorWithBeamSearch(beam_size=4, length_penalty=0.6)`,
starting from [CLS] and stopping at [SEP]): beam search with 4 beams, length penalty 0.6, no minimum
length. Deviation: the repository caps decoding at 1024 steps (in effect: until [SEP]); here the cap is
`max_new_tokens` 40, the repository's training text length (`max_text_len` 40), which COCO captions never
reach. `max_length` (the whole sequence, [CLS] included) may be given instead, as in transformers.

Fine-tuning follows the repository's captioning training: [CLS] caption [SEP], at most 40 tokens,
label-smoothed (0.1) cross-entropy over the caption tokens and [SEP]. Deviation: the logits are computed
only at the positions that carry a target (same loss, far less work on CPU).

Error-propagation probes (bench/metrics/errprop.py; word positions are `errprop.words` positions), as
in models/blip.py with [CLS] in place of [DEC] + prompt: `continue_from` forces the words' word pieces
after [CLS] and continues greedily under `caption`'s length limits (the forced pieces count towards
them; prefixes of different piece lengths are generated in separate unpadded groups), returning forced
words and continuation; `teacher_forced_words` runs [CLS] + caption once and marks a word correct iff
each of its pieces is the argmax at its position (pieces mapped to words by character offsets;
punctuation pieces and [SEP] are not judged).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from bench.api import Captioner, CaptionerConfig, Generation, Knob, VariantInfo
from models.autoregressive import AUTOREGRESSIVE_PROBES, ForcedPrefixProbes, beam_knob, length_knobs
from models.blip import groups_by_length, word_pieces, words_correct
from models.counting import counted_calls, tokens_before_end
from models.imaging import augment
from models.text import normalise_caption
from models.weights import (
    bert_vocab_dir,
    load_pretrained,
    load_pretrained_captioner,
    save_pretrained_captioner,
)


@dataclass
class GitCaptionerConfig(CaptionerConfig):
    #: hub id or directory of a pretrained checkpoint; None builds the architecture below, random init.
    weights: str | None = "microsoft/git-base-coco"
    # Architecture when `weights` is None (a checkpoint brings its own config and processor).
    image_size: int = 224
    patch_size: int = 16
    vision_width: int = 768
    vision_layers: int = 12
    vision_heads: int = 12
    text_width: int = 768
    text_layers: int = 6
    text_heads: int = 12
    # Training.
    augment: str = "none"  # none | crop | crop_flip (models/imaging.py)
    max_words: int = 30
    max_tokens: int = 40  # [CLS] caption [SEP], GIT's max_text_len
    label_smoothing: float = 0.1
    # Decoding defaults (GIT's beam search).
    num_beams: int = 4
    length_penalty: float = 0.6
    max_new_tokens: int = 40
    min_new_tokens: int = 0


class GitCaptioner(ForcedPrefixProbes, Captioner):
    """GIT decoder-only captioner: pretrained (`weights`) or a small random-init configuration."""

    paradigm = "autoregressive"
    knobs = (beam_knob(), *length_knobs(),
             Knob("max_length", int, None, help="at most this many tokens, [CLS] included"),
             Knob("min_length", int, None, help="at least this many tokens, [CLS] included"),
             Knob("length_penalty", float, None, help="beam search length penalty"))
    probes = AUTOREGRESSIVE_PROBES
    config_class = GitCaptionerConfig
    config: GitCaptionerConfig

    def __init__(self, config: GitCaptionerConfig, module: torch.nn.Module | None = None,
                 processor: Any = None):
        super().__init__(config)
        if module is None or processor is None:
            module, processor = self._pretrained() if config.weights else self._from_scratch()
        self._module = module.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        mc = module.config
        self.bos_id, self.eos_id, self.pad_id = mc.bos_token_id, mc.eos_token_id, mc.pad_token_id

    def _pretrained(self):
        from transformers import AutoProcessor, GitForCausalLM

        source = self.config.weights
        module = load_pretrained(GitForCausalLM.from_pretrained, source, "git-tiny", dtype=torch.float32)
        return module, load_pretrained(AutoProcessor.from_pretrained, source, "git-tiny")

    def _from_scratch(self):
        from transformers import AutoTokenizer, CLIPImageProcessorPil, GitConfig, GitForCausalLM, GitProcessor

        c = self.config
        tokenizer = AutoTokenizer.from_pretrained(str(bert_vocab_dir()))
        s = c.image_size
        image_processor = CLIPImageProcessorPil(size={"shortest_edge": s}, crop_size={"height": s, "width": s})
        config = GitConfig(
            vision_config=dict(
                image_size=s, patch_size=c.patch_size, hidden_size=c.vision_width,
                intermediate_size=4 * c.vision_width, num_hidden_layers=c.vision_layers,
                num_attention_heads=c.vision_heads,
            ),
            vocab_size=len(tokenizer), hidden_size=c.text_width, intermediate_size=4 * c.text_width,
            num_hidden_layers=c.text_layers, num_attention_heads=c.text_heads,
            bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        module = GitForCausalLM(config)
        return module, GitProcessor(image_processor=image_processor, tokenizer=tokenizer)

    @property
    def module(self) -> torch.nn.Module:
        return self._module

    # -- data ---------------------------------------------------------------------------------
    def preprocess(self, image: Image.Image, train: bool = False) -> torch.Tensor:
        """The checkpoint's own image processor (size, crop, resample, mean/std); crops only if asked."""
        if train:
            image = augment(image, self.config.augment)
        return self.processor.image_processor(image, return_tensors="pt")["pixel_values"][0]

    def collate(self, images: list[torch.Tensor], captions: list[str]) -> dict[str, torch.Tensor]:
        """[CLS] caption [SEP] [PAD]..; labels hide [CLS] and padding from the loss."""
        text = [normalise_caption(c, self.config.max_words) for c in captions]
        enc = self.tokenizer(text, padding="longest", truncation=True, max_length=self.config.max_tokens,
                             return_tensors="pt")
        ids = enc["input_ids"]
        labels = ids.masked_fill(enc["attention_mask"] == 0, -100)
        labels[:, 0] = -100
        return {"pixel_values": torch.stack(images), "input_ids": ids,
                "attention_mask": enc["attention_mask"], "labels": labels}

    # -- training -----------------------------------------------------------------------------
    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Label-smoothed next-token cross-entropy over the caption tokens.

        Equal to `module(**batch).loss` (without smoothing, as transformers has none for GIT), but the
        vocabulary projection runs only on text positions that carry a target.
        """
        ids = batch["input_ids"]
        hidden = self.module.git(
            input_ids=ids, attention_mask=batch["attention_mask"], pixel_values=batch["pixel_values"],
        ).last_hidden_state[:, -ids.shape[1]:]  # the image tokens come first
        targets = batch["labels"][:, 1:]
        keep = targets != -100
        logits = self.module.output(hidden[:, :-1][keep])
        return F.cross_entropy(logits.float(), targets[keep], label_smoothing=self.config.label_smoothing)

    # -- inference ----------------------------------------------------------------------------
    def default_decoding(self) -> dict[str, Any]:
        c = self.config
        return {"num_beams": c.num_beams, "max_new_tokens": c.max_new_tokens, "length_penalty": c.length_penalty}

    @torch.no_grad()
    def generate_ids(self, pixel_values: torch.Tensor, num_beams: int | None = None,
                     max_new_tokens: int | None = None, max_length: int | None = None,
                     min_new_tokens: int | None = None, min_length: int | None = None,
                     length_penalty: float | None = None) -> torch.Tensor:
        """Generated token ids after [CLS], (batch, length), padded with [PAD] after [SEP]."""
        c = self.config
        beams = num_beams or c.num_beams
        kwargs: dict[str, Any] = {}
        if max_new_tokens is None and max_length is not None:
            kwargs["max_length"] = max_length
        else:
            kwargs["max_new_tokens"] = c.max_new_tokens if max_new_tokens is None else max_new_tokens
        if min_new_tokens is None and min_length is not None:
            kwargs["min_length"] = min_length
        else:
            kwargs["min_new_tokens"] = c.min_new_tokens if min_new_tokens is None else min_new_tokens
        if beams > 1:  # a length penalty means nothing to greedy search (transformers warns)
            kwargs["length_penalty"] = c.length_penalty if length_penalty is None else length_penalty
        input_ids = torch.full((len(pixel_values), 1), self.bos_id, dtype=torch.long, device=pixel_values.device)
        self.module.eval()
        out = self.module.generate(
            pixel_values=pixel_values, input_ids=input_ids, num_beams=beams, do_sample=False,
            bos_token_id=self.bos_id, eos_token_id=self.eos_id, pad_token_id=self.pad_id, **kwargs,
        )
        return out[:, 1:]

    def caption(self, pixel_values: torch.Tensor, **decoding: Any) -> list[str]:
        """Captions; knobs: num_beams, max_new_tokens (or max_length), min_new_tokens (or min_length),
        length_penalty (defaults: `default_decoding()`)."""
        return self.generate(pixel_values, **decoding).captions

    def generate(self, pixel_values: torch.Tensor, **decoding: Any) -> Generation:
        """Captions with the network passes actually run (one per generation step; GIT's decoder and
        image tokens are one transformer) and the tokens generated before [SEP]."""
        with counted_calls(self.module) as passes:
            ids = self.generate_ids(pixel_values, **decoding)
        texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        return Generation([" ".join(t.split()) for t in texts], [passes[0]] * len(ids),
                          tokens_before_end(ids, {self.eos_id}))

    # -- error-propagation probes -------------------------------------------------------------
    @torch.no_grad()
    def continue_from(self, pixel_values: torch.Tensor, prefixes: list[list[str]],
                      max_new_tokens: int | None = None, max_length: int | None = None,
                      min_new_tokens: int | None = None, min_length: int | None = None,
                      **unused: Any) -> list[str]:
        """Greedy captions that start with the forced words `prefixes[i]` (one list per image).

        Always greedy (`num_beams` and `length_penalty` are ignored). Lengths mean what they mean in
        `caption`: `max_new_tokens`/`min_new_tokens` count everything after [CLS], `max_length`/
        `min_length` the whole sequence, so the forced pieces use up part of the budget and a caption
        forced with the first words of its own greedy caption comes out unchanged. A prefix at or over
        the budget is returned as it is.
        """
        c = self.config
        forced = [self.tokenizer(" ".join(p), add_special_tokens=False)["input_ids"] for p in prefixes]
        out: list[str] = [""] * len(forced)
        self.module.eval()
        for width, rows in groups_by_length(forced).items():
            lengths: dict[str, int] = {}
            if max_new_tokens is None and max_length is not None:
                lengths["max_new_tokens"] = max_length - 1 - width  # [CLS] and the forced pieces
            else:
                lengths["max_new_tokens"] = (c.max_new_tokens if max_new_tokens is None else max_new_tokens) - width
            if min_new_tokens is None and min_length is not None:
                lengths["min_length"] = min_length
            else:
                lengths["min_new_tokens"] = max(0, (c.min_new_tokens if min_new_tokens is None else min_new_tokens)
                                                - width)
            if lengths["max_new_tokens"] <= 0:  # transformers refuses 0; nothing is left to generate
                ids = torch.tensor([forced[n] for n in rows], dtype=torch.long).reshape(len(rows), width)
            else:
                input_ids = torch.tensor([[self.bos_id, *forced[n]] for n in rows], device=pixel_values.device)
                ids = self.module.generate(
                    pixel_values=pixel_values[rows], input_ids=input_ids, num_beams=1, do_sample=False,
                    bos_token_id=self.bos_id, eos_token_id=self.eos_id, pad_token_id=self.pad_id, **lengths,
                )[:, 1:]
            for n, text in zip(rows, self.tokenizer.batch_decode(ids, skip_special_tokens=True), strict=True):
                out[n] = " ".join(text.split())  # as `caption`
        return out

    @torch.no_grad()
    def teacher_forced_words(self, pixel_values: torch.Tensor, captions: list[str],
                             batch_size: int = 32) -> list[list[bool]]:
        """Per `errprop.words` word of each caption: is every word piece of it the decoder's argmax given
        the image, [CLS] and the true pieces before it (one forward pass, as in training)?

        Batches of `batch_size` images bound the memory of a long call (the errprop phase passes all
        its images at once).
        """
        out: list[list[bool]] = []
        m = self.module.eval()
        for b in range(0, len(captions), batch_size):
            encoded = [word_pieces(self.tokenizer, text) for text in captions[b: b + batch_size]]
            rows = [[self.bos_id, *ids] for ids, _ in encoded]
            width = max(len(r) for r in rows)
            input_ids = torch.tensor([r + [self.pad_id] * (width - len(r)) for r in rows],
                                     device=pixel_values.device)
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=pixel_values.device)
            hidden = m.git(input_ids=input_ids, attention_mask=mask,
                           pixel_values=pixel_values[b: b + batch_size]).last_hidden_state[:, -width:]
            # Position j predicts piece j + 1 ([CLS] predicts the first caption piece).
            targets, keep = input_ids[:, 1:], mask[:, 1:].bool()
            predicted = torch.full_like(targets, -1)
            predicted[keep] = m.output(hidden[:, :-1][keep]).argmax(-1)
            hits = (predicted == targets).tolist()
            out.extend(words_correct(h, pieces) for h, (_, pieces) in zip(hits, encoded, strict=True))
        return out

    def decode_cost(self, num_beams: int | None = None, max_new_tokens: int | None = None,
                    max_length: int | None = None, num_tokens: float | None = None,
                    min_new_tokens: int | None = None, min_length: int | None = None,
                    length_penalty: float | None = None) -> int:
        """Decoder evaluations per caption: generated tokens x beams.

        The generated tokens are the maximum allowed (`max_new_tokens`, else `max_length` minus [CLS]), an
        upper bound; pass `num_tokens` (the actual mean generated length) for the actual cost. The
        image tokens' single pass (with the first decoder step) is not counted apart. Minimum lengths
        and the length penalty do not change the bound; an unknown knob is a TypeError.
        """
        beams = num_beams or self.config.num_beams
        if num_tokens is None:
            if max_new_tokens is None and max_length is not None:
                num_tokens = max(0, max_length - 1)
            else:
                num_tokens = self.config.max_new_tokens if max_new_tokens is None else max_new_tokens
        return int(round(num_tokens * beams))

    # -- persistence --------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """A save_pretrained directory (model + processor), usable as `weights`, plus this config."""
        save_pretrained_captioner(self.module, self.processor, self.config, directory)

    @classmethod
    def load(cls, directory: Path) -> GitCaptioner:
        """Restore a `save` directory (or any GIT save_pretrained directory, with git-base's settings)."""
        from transformers import GitForCausalLM

        config, module, processor = load_pretrained_captioner(
            cls, directory, "git-base", GitForCausalLM.from_pretrained, "git-tiny")
        return cls(config, module=module, processor=processor)


GitCaptioner.variants = {
    "git-base": GitCaptionerConfig(),
    "git-tiny": GitCaptionerConfig(
        weights=None, image_size=64, patch_size=8, vision_width=128, vision_layers=2, vision_heads=4,
        text_width=128, text_layers=2, text_heads=4, max_tokens=32, max_new_tokens=24,
    ),
}
GitCaptioner.info = {
    "git-base": VariantInfo("4M images", "GIT base, COCO-fine-tuned checkpoint", "177M"),
    "git-tiny": VariantInfo("none", "GIT architecture, small config, random init"),
}
