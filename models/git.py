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
from typing import Any

import torch

from bench.api import Knob, VariantInfo
from models.autoregressive import AUTOREGRESSIVE_PROBES, beam_knob, length_knobs
from models.hf_captioner import PretrainedCaptioner, PretrainedCaptionerConfig
from models.text import normalise_caption
from models.weights import bert_vocab_dir


@dataclass
class GitCaptionerConfig(PretrainedCaptionerConfig):
    weights: str | None = "microsoft/git-base-coco"
    text_layers: int = 6
    max_tokens: int = 40  # [CLS] caption [SEP], GIT's max_text_len
    # Decoding defaults (GIT's beam search).
    num_beams: int = 4
    length_penalty: float = 0.6
    max_new_tokens: int = 40
    min_new_tokens: int = 0


class GitCaptioner(PretrainedCaptioner):
    """GIT decoder-only captioner: pretrained (`weights`) or a small random-init configuration.

    What GIT shares with BLIP is in models/hf_captioner.py; here: its module, ids, loss positions,
    lengths counted in generated tokens, and `length_penalty`.
    """

    knobs = (beam_knob(), *length_knobs(),
             Knob("max_length", int, None, help="at most this many tokens, [CLS] included"),
             Knob("min_length", int, None, help="at least this many tokens, [CLS] included"),
             Knob("length_penalty", float, None, help="beam search length penalty"))
    probes = AUTOREGRESSIVE_PROBES
    config_class = GitCaptionerConfig
    config: GitCaptionerConfig
    module_class = "GitForCausalLM"
    base_variant, tiny_variant = "git-base", "git-tiny"

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

    def _special_ids(self, module_config: Any) -> tuple[int, int, int]:
        return module_config.bos_token_id, module_config.eos_token_id, module_config.pad_token_id

    @property
    def eos_id(self) -> int:
        """[SEP], GIT's end of caption."""
        return self.end_id

    def training_text(self, caption: str) -> str:
        return normalise_caption(caption, self.config.max_words)

    def _text_hidden(self, pixel_values: torch.Tensor, input_ids: torch.Tensor,
                     attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.module.git(input_ids=input_ids, attention_mask=attention_mask,
                                 pixel_values=pixel_values).last_hidden_state
        return hidden[:, -input_ids.shape[1]:]  # the image tokens come first

    def _project(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.module.output(hidden)

    def counted_module(self) -> torch.nn.Module:
        """The whole model: GIT's decoder and image tokens are one transformer, run once per step."""
        return self.module

    def length_defaults(self) -> dict[str, int]:
        """GIT's lengths count generated tokens only ([CLS] excluded)."""
        return {"max_new_tokens": self.config.max_new_tokens, "min_new_tokens": self.config.min_new_tokens}

    def _options(self, num_beams: int, length_penalty: float | None = None) -> tuple[str | None, dict[str, Any]]:
        options: dict[str, Any] = {"bos_token_id": self.bos_id, "eos_token_id": self.end_id,
                                   "pad_token_id": self.pad_id}
        if num_beams > 1:  # a length penalty means nothing to greedy search (transformers warns)
            options["length_penalty"] = self.config.length_penalty if length_penalty is None else length_penalty
        return None, options

    def default_decoding(self) -> dict[str, Any]:
        c = self.config
        return {"num_beams": c.num_beams, "max_new_tokens": c.max_new_tokens, "length_penalty": c.length_penalty}


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
