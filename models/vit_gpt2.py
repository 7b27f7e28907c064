"""ViT-GPT2 trained from scratch: the autoregressive counterpart of a model that sees only the task data.

Paper/upstream: a ViT image encoder (Dosovitskiy et al. 2021) and a GPT-2 decoder (Radford et al. 2019)
with cross-attention, as in transformers' VisionEncoderDecoderModel (the architecture of
`nlpconnect/vit-gpt2-image-captioning`). Licence of the code used: Apache-2.0 (transformers).
Paradigm: autoregressive.

Here both halves start from random weights (no ImageNet or WebText pre-training) and a word-level
tokenizer is trained on the training captions, so the comparison with a diffusion captioner trained on
the same data isolates the decoding paradigm. Decoding: beam search, `num_beams` 4 and
`max_new_tokens` 16 by default (the nlpconnect model card's settings; word-level tokens here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from bench.api import Generation, VariantInfo
from models.autoregressive import (
    AUTOREGRESSIVE_PROBES,
    ForcedPrefixProbes,
    beam_knob,
    length_knobs,
    text_prefix,
)
from models.counting import counted_calls, tokens_before_end
from models.hf_stack import generate_options, weights_dtype
from models.scratch import ScratchCaptioner, ScratchConfig
from models.text import BOS, EOS, PAD


@dataclass
class VitGpt2Config(ScratchConfig):
    patch_size: int = 16
    encoder_width: int = 768
    encoder_layers: int = 12
    encoder_heads: int = 12
    decoder_width: int = 768
    decoder_layers: int = 12
    decoder_heads: int = 12
    dropout: float = 0.1
    num_beams: int = 4
    max_new_tokens: int = 16


class VitGpt2Captioner(ForcedPrefixProbes, ScratchCaptioner):
    """ViT encoder + GPT-2 decoder with cross-attention, random init, own word-level tokenizer."""

    paradigm = "autoregressive"
    config_class = VitGpt2Config
    knobs = (beam_knob(), *length_knobs())
    probes = AUTOREGRESSIVE_PROBES
    stacks, dtypes = ("eager", "compiled"), ("fp32", "bf16")  # models/hf_stack.py
    config: VitGpt2Config

    def build_module(self, vocab_size: int) -> torch.nn.Module:
        from transformers import GPT2Config, VisionEncoderDecoderConfig, VisionEncoderDecoderModel, ViTConfig

        c = self.config
        encoder = ViTConfig(
            image_size=c.image_size, patch_size=c.patch_size, hidden_size=c.encoder_width,
            num_hidden_layers=c.encoder_layers, num_attention_heads=c.encoder_heads,
            intermediate_size=4 * c.encoder_width, hidden_dropout_prob=c.dropout,
            attention_probs_dropout_prob=c.dropout,
        )
        decoder = GPT2Config(
            vocab_size=vocab_size, n_positions=max(64, c.max_tokens + c.max_new_tokens),
            n_embd=c.decoder_width, n_layer=c.decoder_layers, n_head=c.decoder_heads,
            resid_pdrop=c.dropout, embd_pdrop=c.dropout, attn_pdrop=c.dropout,
            bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD,
            add_cross_attention=True, is_decoder=True,
        )
        config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
        config.decoder_start_token_id = BOS
        config.pad_token_id = PAD
        config.eos_token_id = EOS
        model = VisionEncoderDecoderModel(config=config)
        model.generation_config.decoder_start_token_id = BOS
        model.generation_config.pad_token_id = PAD
        model.generation_config.eos_token_id = EOS
        model.generation_config.bos_token_id = BOS
        return model

    def apply_stack(self, dtype: str, stack: str) -> None:
        """bf16: converted weights; compiled: the static KV cache (generate_options) and the GPT-2
        decoder's forward under torch.compile, which transformers' generate does not do itself for
        an encoder-decoder cache or for beam search."""
        super().apply_stack(dtype, stack)
        decoder = self.module.decoder
        decoder.__dict__.pop("forward", None)  # eager: the class's forward again
        if stack == "compiled":
            decoder.forward = torch.compile(decoder.forward, dynamic=False)

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ids = batch["input_ids"]
        # Targets are the tokens after [BOS]; the model shifts them right behind decoder_start=[BOS].
        labels = ids[:, 1:].masked_fill(ids[:, 1:] == PAD, -100)
        # Decoder input = [BOS] + labels[:-1]: attend to [BOS] and every position whose label is a token.
        mask = torch.cat([torch.ones_like(labels[:, :1]), (labels[:, :-1] != -100).long()], dim=1)
        return self.module(pixel_values=batch["pixel_values"], labels=labels,
                           decoder_attention_mask=mask).loss

    def loss_weight(self, batch: dict[str, torch.Tensor]) -> int:
        """The number of target tokens `training_loss` averages over, so that data-parallel shards of a
        batch combine into exactly the batch's loss (bench/train.py)."""
        return int((batch["input_ids"][:, 1:] != PAD).sum())

    def default_decoding(self) -> dict[str, Any]:
        return {"num_beams": self.config.num_beams, "max_new_tokens": self.config.max_new_tokens}

    @torch.no_grad()
    def caption(self, pixel_values: torch.Tensor, num_beams: int | None = None,
                max_new_tokens: int | None = None, min_new_tokens: int = 0) -> list[str]:
        return self.generate(pixel_values, num_beams=num_beams, max_new_tokens=max_new_tokens,
                             min_new_tokens=min_new_tokens).captions

    @torch.no_grad()
    def generate(self, pixel_values: torch.Tensor, num_beams: int | None = None,
                 max_new_tokens: int | None = None, min_new_tokens: int = 0) -> Generation:
        """Captions with the decoder passes actually run and the tokens generated before [EOS]."""
        assert self.tokenizer is not None
        self.module.eval()
        with counted_calls(self.module.decoder) as passes:  # the encoder runs once, outside the count
            out = self.module.generate(
                pixel_values=pixel_values.to(weights_dtype(self.module)), **generate_options(self),
                num_beams=num_beams or self.config.num_beams,
                max_new_tokens=max_new_tokens or self.config.max_new_tokens,
                min_new_tokens=min_new_tokens,  # forcing a length (latency vs length) bans [EOS] until then
                do_sample=False,
            )
        tokens = tokens_before_end(out[:, 1:], {EOS})  # out starts with the decoder start [BOS]
        return Generation([self.tokenizer.decode(row) for row in out.tolist()], [passes[0]] * len(out), tokens)

    def forced_prefix(self, caption: str, position: int, word: str) -> str:
        """The caption's text up to word `position`, then `word` (its "," tokens forced too)."""
        return text_prefix(caption, position, word)

    @torch.no_grad()
    def continue_from(self, pixel_values: torch.Tensor, prefixes: list[list[str] | str],
                      max_new_tokens: int | None = None, **unused_decoding: Any) -> list[str]:
        """Greedy continuation after forced prefixes (word lists, or text as `forced_prefix` gives):
        prefixes of different token lengths are generated in separate groups (no padding)."""
        assert self.tokenizer is not None
        self.module.eval()
        texts = [p if isinstance(p, str) else " ".join(p) for p in prefixes]
        encoded = self.tokenizer.encode(texts, 512)
        widths = (encoded != PAD).sum(1).tolist()  # [BOS] + the prefix's tokens + [EOS]
        out = [""] * len(texts)
        for width in sorted(set(widths)):
            rows = [n for n, w in enumerate(widths) if w == width]
            start = encoded[rows, : width - 1]  # [BOS] + the prefix's tokens
            left = (max_new_tokens or self.config.max_new_tokens) - (width - 2)  # the forced ones count
            generated = start if left <= 0 else self.module.generate(  # a full prefix is returned as it is
                pixel_values=pixel_values[rows], decoder_input_ids=start.to(pixel_values.device), num_beams=1,
                do_sample=False, max_new_tokens=left,
            )
            for n, row in zip(rows, generated.tolist(), strict=True):
                out[n] = self.tokenizer.decode(row)
        return out

    @torch.no_grad()
    def teacher_forced_words(self, pixel_values: torch.Tensor, captions: list[str]) -> list[list[bool]]:
        assert self.tokenizer is not None
        self.module.eval()
        ids = self.tokenizer.encode(captions, self.config.max_tokens).to(pixel_values.device)
        logits = self.module(pixel_values=pixel_values, decoder_input_ids=ids[:, :-1]).logits
        hits = logits.argmax(-1) == ids[:, 1:]
        words = (ids[:, 1:] > EOS).sum(1).tolist()  # real words: not [PAD]/[BOS]/[EOS]
        return [hits[i, : words[i]].tolist() for i in range(len(captions))]

    def decode_cost(self, num_beams: int | None = None, max_new_tokens: int | None = None,
                    min_new_tokens: int = 0) -> int:
        """Upper bound of decoder evaluations per caption: generated tokens x beams.

        Unknown knobs are a TypeError here as in `caption`, so a misspelt setting cannot pass silently.
        """
        return (max_new_tokens or self.config.max_new_tokens) * (num_beams or self.config.num_beams)


VitGpt2Captioner.variants = {
    "vit-gpt2-scratch": VitGpt2Config(),
    "vit-gpt2-mini": VitGpt2Config(
        image_size=64, patch_size=16, encoder_width=128, encoder_layers=2, encoder_heads=4,
        decoder_width=128, decoder_layers=2, decoder_heads=4, min_frequency=1, vocab_size=2000,
        num_beams=3, max_new_tokens=24, max_tokens=28,
    ),
    "vit-gpt2-tiny": VitGpt2Config(
        image_size=32, patch_size=8, encoder_width=32, encoder_layers=1, encoder_heads=2,
        decoder_width=32, decoder_layers=1, decoder_heads=2, min_frequency=1, vocab_size=500,
        num_beams=2, max_new_tokens=12, max_tokens=16, dropout=0.0,
    ),
}
VitGpt2Captioner.info = {
    "vit-gpt2-scratch": VariantInfo("none", "ViT-B/16 + GPT-2 (12 layers), random init",
                                     "208M (its 10,000-token vocabulary)"),
    "vit-gpt2-mini": VariantInfo("none", "ViT + GPT-2, 2+2 layers x 128, random init (shapes, CPU)"),
    "vit-gpt2-tiny": VariantInfo("none", "test-sized"),
}
