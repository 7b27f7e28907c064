"""The denoising network: a bidirectional transformer over caption tokens with cross-attention to the
image tokens, and the image encoder it reads (LaDiC's encoders, by import).

No timestep input: for the absorbing state the number of [MASK] tokens already tells the noise level,
and MDLM and LLaDA drop the time conditioning. Pre-LN layers (self-attention without a causal or
padding mask, cross-attention to the image, GELU FFN). The classifier-free guidance's unconditional
pass reads a learned null memory (one vector at every image position: the same shapes as the image's).
The image tokens' cross-attention keys/values are computed once per caption call (`memory_kv`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from models.attention import CrossAttentionLayer
from models.masked_diffusion.config import MDMConfig

MemoryKV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: (batch, heads, M, head_dim) keys, values


class Block(CrossAttentionLayer):
    """x + SelfAttn(LN x); x + CrossAttn(LN x, image); x + FFN(LN x)."""

    def __init__(self, width: int, heads: int, ffn: int, memory_width: int, dropout: float):
        super().__init__(width, heads, ffn, memory_width, dropout, pre_norm=True, eps=1e-5)


class MaskedDenoiser(nn.Module):
    """Token ids with [MASK] (batch, L) + image keys/values -> logits over the real tokens (batch, L, V)."""

    def __init__(self, vocab: int, length: int, memory_width: int, width: int, layers: int, heads: int,
                 ffn: int, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(vocab + 1, width)  # + [MASK] (the last index)
        self.positions = nn.Parameter(torch.zeros(length, width))
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(Block(width, heads, ffn, memory_width, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)  # [MASK] is never a prediction (MDLM's zero-masking)
        self.apply(_init_weights)

    def memory_kv(self, memory: torch.Tensor) -> MemoryKV:
        return [layer.memory_kv(memory) for layer in self.layers]

    def forward(self, tokens: torch.Tensor, kv: MemoryKV) -> torch.Tensor:
        h = self.drop(self.embed(tokens) + self.positions)
        for layer, layer_kv in zip(self.layers, kv, strict=True):
            h = layer(h, layer_kv)
        return self.head(self.norm(h))


class MDMNetwork(nn.Module):
    """Everything with weights: image encoder, null memory, denoiser. The process lives in process.py."""

    def __init__(self, image_encoder: nn.Module, vocab: int, cfg: MDMConfig):
        super().__init__()
        self.image_encoder = image_encoder
        self.null_memory = nn.Parameter(torch.randn(image_encoder.width) * 0.02)
        self.denoiser = MaskedDenoiser(vocab, cfg.max_tokens, image_encoder.width, cfg.width, cfg.layers,
                                       cfg.heads, cfg.ffn, cfg.dropout)

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Image tokens (batch, M, width); no graph through a frozen encoder."""
        if getattr(self.image_encoder, "frozen", False):
            with torch.no_grad():
                return self.image_encoder(pixel_values)
        return self.image_encoder(pixel_values)

    def null(self, like: torch.Tensor) -> torch.Tensor:
        """The unconditional memory, shaped as `like` (batch, M, width)."""
        return self.null_memory.to(like.dtype).expand_as(like)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, MaskedDenoiser):
        nn.init.normal_(module.positions, std=0.02)


def build_image_encoder(cfg: MDMConfig, vision_config: dict[str, Any] | None = None,
                        load_weights: bool = True) -> tuple[nn.Module, dict[str, Any] | None]:
    """LaDiC's image encoder for these settings and, for BLIP, the vision config that rebuilds it."""
    from models.ladic.network import build_image_encoder as ladic_image_encoder

    return ladic_image_encoder(cfg, vision_config, load_weights, offline="mdm-mini")
