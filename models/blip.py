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
from typing import Any

import torch

from bench.api import Knob, VariantInfo
from models.autoregressive import AUTOREGRESSIVE_PROBES, beam_knob, length_knobs
from models.hf_captioner import PretrainedCaptioner, PretrainedCaptionerConfig
from models.hf_captioner import strip_prompt as strip_prompt  # public here: BLIP's prompt is what it strips
from models.weights import bert_vocab_dir


@dataclass
class BlipCaptionerConfig(PretrainedCaptionerConfig):
    weights: str | None = "Salesforce/blip-image-captioning-base"
    image_size: int = 384
    max_tokens: int = 40  # [DEC] + prompt + caption + [SEP], as BLIP's decoder tokenisation
    # Decoding defaults (BLIP's captioning settings).
    prompt: str = "a picture of "
    num_beams: int = 3
    max_length: int = 20
    min_length: int = 5


def pre_caption(caption: str, max_words: int) -> str:
    """BLIP's caption cleaning for training: lower-case, drop .!"()*#:;~, collapse spaces, cut words."""
    caption = re.sub(r"\s{2,}", " ", re.sub(r"([.!\"()*#:;~])", " ", caption.lower())).strip()
    return " ".join(caption.split(" ")[:max_words])


class BlipCaptioner(PretrainedCaptioner):
    """BLIP image-grounded text decoder: pretrained (`weights`) or a small random-init configuration.

    What BLIP shares with GIT is in models/hf_captioner.py; here: its module, ids, loss positions,
    the prompt, and lengths counted over the whole decoder sequence.
    """

    knobs = (beam_knob(), *length_knobs(),
             Knob("max_length", int, None, help="at most this many decoder tokens, [DEC] and prompt included"),
             Knob("min_length", int, None, help="at least this many decoder tokens, [DEC] and prompt included"),
             Knob("prompt", str, None, help="text prefix the caption continues (removed from the output)"))
    probes = AUTOREGRESSIVE_PROBES
    config_class = BlipCaptionerConfig
    config: BlipCaptionerConfig
    module_class = "BlipForConditionalGeneration"
    base_variant, tiny_variant = "blip-base", "blip-tiny"
    # transformers' BLIP generate replaces the first id by [DEC] and drops the last (the [SEP] of a
    # tokenised prompt), so the prompt goes in as [DEC] prompt [SEP].
    generate_drops_last = True

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

    def _special_ids(self, module_config: Any) -> tuple[int, int, int]:
        text = module_config.text_config
        return text.bos_token_id, text.sep_token_id, text.pad_token_id

    @property
    def sep_id(self) -> int:
        """[SEP], BLIP's end of caption."""
        return self.end_id

    @property
    def default_prompt(self) -> str:
        return self.config.prompt

    def training_text(self, caption: str) -> str:
        """prompt + BLIP's `pre_caption` (the tokenizer's [CLS] becomes [DEC] in `collate`)."""
        return self.config.prompt + pre_caption(caption, self.config.max_words)

    def _text_hidden(self, pixel_values: torch.Tensor, input_ids: torch.Tensor,
                     attention_mask: torch.Tensor) -> torch.Tensor:
        m = self.module
        image_embeds = m.vision_model(pixel_values=pixel_values).last_hidden_state
        return m.text_decoder.bert(input_ids=input_ids, attention_mask=attention_mask,
                                   encoder_hidden_states=image_embeds, is_decoder=True).last_hidden_state

    def _project(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.module.text_decoder.cls(hidden)

    def counted_module(self) -> torch.nn.Module:
        """The text decoder (the image encoder's one pass is not a decoder pass)."""
        return self.module.text_decoder

    def length_defaults(self) -> dict[str, int]:
        """BLIP's lengths count the whole decoder sequence, [DEC] and prompt included."""
        return {"max_length": self.config.max_length, "min_length": self.config.min_length}

    def _options(self, num_beams: int, prompt: str | None = None) -> tuple[str | None, dict[str, Any]]:
        return prompt, {}

    def default_decoding(self) -> dict[str, Any]:
        c = self.config
        return {"num_beams": c.num_beams, "max_length": c.max_length, "min_length": c.min_length,
                "prompt": c.prompt}


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
