"""The transformer layer both diffusion captioners use: self-attention over the caption positions,
cross-attention to the image tokens, a feed-forward block.

LaDiC's diffuser is BERT-style (post-LayerNorm: add, then normalise, eps 1e-12); the masked-diffusion
denoiser is pre-LayerNorm (normalise, then add). The image tokens' keys and values are the same at
every sampling step, so `memory_kv` computes them once per caption call and `forward` takes them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CrossAttentionLayer(nn.Module):
    """x -> SelfAttn -> CrossAttn(image) -> FFN, each a residual with LayerNorm after (post-norm, BERT)
    or before (pre-norm)."""

    def __init__(self, width: int, heads: int, ffn: int, memory_width: int, dropout: float,
                 pre_norm: bool = False, eps: float = 1e-12):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.heads, self.dropout, self.pre_norm = heads, dropout, pre_norm
        # Creation order of the linear layers fixes how a seed initialises them: keep it.
        self.qkv = nn.Linear(width, 3 * width)
        self.self_out = nn.Linear(width, width)
        self.norm1 = nn.LayerNorm(width, eps=eps)
        self.cross_q = nn.Linear(width, width)
        self.cross_kv = nn.Linear(memory_width, 2 * width)
        self.cross_out = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, eps=eps)
        self.ffn = nn.Sequential(nn.Linear(width, ffn), nn.GELU(), nn.Linear(ffn, width))
        self.norm3 = nn.LayerNorm(width, eps=eps)
        self.drop = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, -1).transpose(1, 2)

    @staticmethod
    def _merge(x: torch.Tensor) -> torch.Tensor:
        b, _, n, _ = x.shape
        return x.transpose(1, 2).reshape(b, n, -1)

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.cross_kv(memory).chunk(2, dim=-1)
        return self._split(k), self._split(v)

    def _residual(self, h: torch.Tensor, norm: nn.LayerNorm, block) -> torch.Tensor:
        if self.pre_norm:
            return h + self.drop(block(norm(h)))
        return norm(h + self.drop(block(h)))

    def forward(self, h: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        p = self.dropout if self.training else 0.0

        def self_attention(x: torch.Tensor) -> torch.Tensor:
            q, k, v = (self._split(y) for y in self.qkv(x).chunk(3, dim=-1))
            return self.self_out(self._merge(F.scaled_dot_product_attention(q, k, v, dropout_p=p)))

        def cross_attention(x: torch.Tensor) -> torch.Tensor:
            q = self._split(self.cross_q(x))
            return self.cross_out(self._merge(F.scaled_dot_product_attention(q, *kv, dropout_p=p)))

        h = self._residual(h, self.norm1, self_attention)
        h = self._residual(h, self.norm2, cross_attention)
        return self._residual(h, self.norm3, self.ffn)
