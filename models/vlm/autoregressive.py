"""Released autoregressive VLMs as zero-shot captioners: Gemma 4 and smaller ones, one variant entry each.

Paradigm: autoregressive. Implementation: transformers' image-text-to-text classes and each checkpoint's
own processor (models/vlm/base.py: prompt, images, post-processing, loading). Decoding: greedy by
default (`num_beams` 1), at most `max_new_tokens` generated tokens, stopping at the checkpoint's end ids
(eos, end of turn).

Cost (`Generation`): network_evals = forward calls of the whole model during `generate` (the prompt's
prefill is one of them; each later call adds one token per beam), tokens = generated tokens before the
first end id.

Probes (models/autoregressive.py's forced-prefix probes):
  - `continue_from` appends the forced words to the prompt text (the model's turn starts with them) and
    continues greedily; the forced tokens use part of the `max_new_tokens` budget. The text is the
    forced words and the continuation, post-processed like a caption.
  - `teacher_forced_words` runs prompt + caption through the model once and marks a word correct iff
    each of its tokens is the argmax at its position (tokens mapped to words by character offsets,
    models/hf_captioner.py `word_pieces`).
  - sampling: nucleus (top-p 0.9 at `temperature`) and the top k beams, through the same `caption`.
"""

from __future__ import annotations

from typing import Any

import torch

from bench.api import Generation, Knob, VariantInfo
from models.autoregressive import (
    AUTOREGRESSIVE_PROBES,
    ForcedPrefixProbes,
    beam_knob,
    generate_overridden,
    with_temperature,
)
from models.counting import counted_calls
from models.hf_captioner import word_pieces, words_correct
from models.vlm.base import VlmCaptioner, VlmConfig

GEMMA4_PROCESSOR = "models.vlm.processors:ImageOnlyGemma4Processor"


class VlmAutoregressiveCaptioner(ForcedPrefixProbes, VlmCaptioner):
    """A released autoregressive VLM (variants below; adding one is one entry)."""

    knobs = (beam_knob(sweep=(1, 3)),
             Knob("max_new_tokens", int, None, help="at most this many generated tokens (default: the variant's)"),
             Knob("min_new_tokens", int, None, help="at least this many generated tokens"))
    probes = AUTOREGRESSIVE_PROBES
    tiny_variant = "vlm-gemma4-test"

    @torch.no_grad()
    def generate_ids(self, pixel_values: torch.Tensor, num_beams: int | None = None,
                     max_new_tokens: int | None = None, min_new_tokens: int | None = None,
                     suffixes: list[str] | None = None) -> torch.Tensor:
        """Generated ids after the prompt (and suffix), (rows, length); rows = images x returned sequences."""
        enc = self.model_inputs(pixel_values, suffixes)
        lengths = {"max_new_tokens": max_new_tokens or self.config.max_new_tokens}
        if min_new_tokens is not None:
            lengths["min_new_tokens"] = min_new_tokens
        out = self.module.generate(**enc, num_beams=num_beams or 1, do_sample=False, **lengths)
        return out[:, enc["input_ids"].shape[1]:]

    def generate(self, pixel_values: torch.Tensor, **decoding: Any) -> Generation:
        """Post-processed captions, the model's forward calls and the tokens generated before the end."""
        with counted_calls(self.module) as passes:
            ids = self.generate_ids(pixel_values, **decoding)
        return Generation([self.postprocess(t) for t in self.decode(ids)], [passes[0]] * len(ids),
                          self.tokens_before_end(ids))

    def caption(self, pixel_values: torch.Tensor, **decoding: Any) -> list[str]:
        return self.generate(pixel_values, **decoding).captions

    def caption_raw(self, pixel_values: torch.Tensor, **decoding: Any) -> list[str]:
        """The decoded text before post-processing (repetition is measured on it)."""
        return self.decode(self.generate_ids(pixel_values, **decoding))

    def decode_cost(self, num_beams: int | None = None, max_new_tokens: int | None = None,
                    min_new_tokens: int | None = None, num_tokens: float | None = None) -> int:
        """Forward passes per caption: generated tokens x beams (the maximum unless `num_tokens` is given)."""
        tokens = num_tokens if num_tokens is not None else (max_new_tokens or self.config.max_new_tokens)
        return int(round(tokens * (num_beams or 1)))

    def default_decoding(self) -> dict[str, Any]:
        return {"num_beams": 1}

    # -- probes -------------------------------------------------------------------------------
    @torch.no_grad()
    def continue_from(self, pixel_values: torch.Tensor, prefixes: list[list[str]], num_beams: int | None = None,
                      max_new_tokens: int | None = None, min_new_tokens: int | None = None) -> list[str]:
        """Greedy captions whose text starts with the forced words `prefixes[i]` (one image at a time:
        forced prefixes tokenise to different lengths, and left padding would shift nothing here but the
        budget does)."""
        budget = max_new_tokens or self.config.max_new_tokens
        out = []
        for i, words in enumerate(prefixes):
            forced = " ".join(words)
            n = len(self.tokenizer(forced, add_special_tokens=False)["input_ids"]) if forced else 0
            if budget - n <= 0:
                out.append(self.postprocess(forced))
                continue
            ids = self.generate_ids(pixel_values[i:i + 1], num_beams=1, max_new_tokens=budget - n,
                                    min_new_tokens=None if min_new_tokens is None else max(0, min_new_tokens - n),
                                    suffixes=[forced])
            text = " ".join(f"{forced} {self.decode(ids)[0]}".split())
            out.append(self.postprocess(text))
        return out

    @torch.no_grad()
    def teacher_forced_words(self, pixel_values: torch.Tensor, captions: list[str]) -> list[list[bool]]:
        """Per word of each caption: is each of its tokens the argmax given the image, prompt and the
        true tokens before it? One forward pass per image."""
        out = []
        for i, caption in enumerate(captions):
            ids, pieces = word_pieces(self.tokenizer, caption)
            enc = self.model_inputs(pixel_values[i:i + 1])
            start = enc["input_ids"].shape[1]
            tail = torch.tensor([ids], device=enc["input_ids"].device, dtype=enc["input_ids"].dtype)
            enc["input_ids"] = torch.cat([enc["input_ids"], tail], dim=1)
            enc["attention_mask"] = torch.cat([enc["attention_mask"], torch.ones_like(tail)], dim=1)
            if "mm_token_type_ids" in enc:
                enc["mm_token_type_ids"] = torch.cat([enc["mm_token_type_ids"], torch.zeros_like(tail)], dim=1)
            if "token_type_ids" in enc:
                enc["token_type_ids"] = torch.cat([enc["token_type_ids"], torch.ones_like(tail)], dim=1)
            logits = self.module(**enc).logits[0, start - 1:-1]
            hits = (logits.argmax(-1) == tail[0]).tolist()
            out.append(words_correct(hits, pieces))
        return out

    def sample_captions(self, pixel_values: torch.Tensor, k: int, method: str, seed: int = 0,
                        temperature: float = 1.0, top_p: float | None = None,
                        **decoding: Any) -> list[list[str]]:
        """k captions per image by nucleus sampling at `temperature` (top-p `top_p`, else 0.9) or the
        top k beams (deterministic: no temperature or top-p)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        settings = with_temperature(self.sampling_settings(method, k), method, temperature, top_p)
        decoding = {n: v for n, v in decoding.items() if n != "num_beams"}
        devices = [pixel_values.device] if pixel_values.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), generate_overridden(self.module, settings):
            torch.manual_seed(seed)
            captions = self.caption(pixel_values, **decoding)
        return [captions[i * k:(i + 1) * k] for i in range(len(pixel_values))]


def _gemma4(weights: str | None, checkpoint: str, **extra: Any) -> VlmConfig:
    return VlmConfig(weights=weights, checkpoint=checkpoint, model_class="Gemma4ForConditionalGeneration",
                     processor=GEMMA4_PROCESSOR, tiny="gemma4", **extra)


VlmAutoregressiveCaptioner.variants = {
    "vlm-gemma4-26b-a4b": _gemma4("google/gemma-4-26B-A4B-it", "instruction-tuned (Gemma 4 26B-A4B-it)",
                                  dtype="bfloat16"),
    "vlm-smolvlm-256m": VlmConfig(weights="HuggingFaceTB/SmolVLM-256M-Instruct", image_size=512,
                                  processor="models.vlm.processors:ImageOnlySmolVLMProcessor",
                                  checkpoint="instruction-tuned (SmolVLM-256M-Instruct)", tiny="smolvlm"),
    "vlm-qwen2.5-vl-3b": VlmConfig(weights="Qwen/Qwen2.5-VL-3B-Instruct", image_size=448, dtype="bfloat16",
                                   processor="models.vlm.processors:ImageOnlyQwen2_5_VLProcessor",
                                   checkpoint="instruction-tuned (Qwen2.5-VL-3B-Instruct)", tiny="qwen2_5_vl"),
    "vlm-paligemma2-3b-mix": VlmConfig(
        weights="google/paligemma2-3b-mix-224", image_size=224, dtype="bfloat16", chat_template=False,
        instruction="caption en", tiny="paligemma",
        checkpoint="fine-tuned on a mixture of transfer tasks, captioning among them (PaliGemma 2 3B mix-224); "
                   "its caption data may include COCO's, so its COCO row is not claimed zero-shot"),
    "vlm-gemma4-test": _gemma4(None, "random weights, tiny Gemma 4 configuration (tests)", image_size=32),
}
VlmAutoregressiveCaptioner.info = {
    name: VariantInfo(pretraining="released checkpoint" if c.weights else "none", description=c.checkpoint)
    for name, c in VlmAutoregressiveCaptioner.variants.items()
}
