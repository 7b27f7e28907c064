"""The diffuser: a BERT-style transformer that predicts x0 from (x_t, self-condition, t, image tokens).

Input = concat(x_t, x0_selfcond) (2 x latent width) + sinusoidal timestep embedding + learned
positions, LayerNorm, dropout; then post-LN layers of bidirectional self-attention (no padding mask:
every position holds a word or the filler), cross-attention to the image tokens, and a GELU FFN.
Output = the first `latent` channels (paper: width = 2 x latent, no projection). When the width differs
(the CPU-sized variants) a linear projection goes in and out instead.

The image tokens' cross-attention keys/values do not change during sampling: `memory_kv` computes them
once per caption call and `forward` takes them, so a sampling step never touches the image again.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.attention import CrossAttentionLayer

MemoryKV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values (batch, heads, M, head_dim)


def timestep_embedding(t: torch.Tensor, width: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer-style sinusoidal embedding of integer timesteps: (batch,) -> (batch, width)."""
    half = width // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    return F.pad(emb, (0, width % 2))


class DiffuserLayer(CrossAttentionLayer):
    """Self-attention, cross-attention to the image tokens, FFN; each followed by add & LayerNorm (BERT)."""

    def __init__(self, width: int, heads: int, ffn: int, memory_width: int, dropout: float):
        super().__init__(width, heads, ffn, memory_width, dropout, pre_norm=False, eps=1e-12)


class Diffuser(nn.Module):
    """Predicts x0 (batch, tokens, latent) from x_t, the self-condition, t and the image memory."""

    def __init__(self, latent: int, memory_width: int, width: int, layers: int, heads: int, ffn: int,
                 max_tokens: int, dropout: float = 0.1, time_layernorm: bool = False):
        super().__init__()
        self.latent, self.width = latent, width
        paper_shape = width == 2 * latent  # the paper's layout: no projections
        self.proj_in = nn.Identity() if paper_shape else nn.Linear(2 * latent, width)
        self.proj_out = nn.Identity() if paper_shape else nn.Linear(width, latent)
        self.positions = nn.Parameter(torch.zeros(max_tokens, width))
        self.time_norm = nn.LayerNorm(width) if time_layernorm else nn.Identity()
        self.norm = nn.LayerNorm(width, eps=1e-12)
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(DiffuserLayer(width, heads, ffn, memory_width, dropout)
                                    for _ in range(layers))
        self.apply(_init_weights)
        # The input sum is x_t and the self-condition + the sinusoidal timestep embedding (variance 1/2
        # per channel, the same at every position) + positions. Positions at BERT's 0.02 would be ~35x
        # weaker than the timestep term: until they grew, all positions would look alike and the
        # image-only prediction could not tell the first word from the fifth. Start them at the
        # timestep embedding's scale. (Projections stay at 0.02: a variance-preserving in-projection
        # lets the dilated noise (std 4) swamp both terms, and short CPU runs collapsed.)
        nn.init.normal_(self.positions, std=0.5 ** 0.5)

    def memory_kv(self, memory: torch.Tensor) -> MemoryKV:
        """Cross-attention keys/values of the image tokens for every layer (compute once, reuse)."""
        return [layer.memory_kv(memory) for layer in self.layers]

    def forward(self, x_t: torch.Tensor, self_cond: torch.Tensor, t: torch.Tensor,
                kv: MemoryKV) -> torch.Tensor:
        h = self.proj_in(torch.cat([x_t, self_cond], dim=-1))
        h = h + self.time_norm(timestep_embedding(t, self.width).to(h.dtype))[:, None] + self.positions
        h = self.drop(self.norm(h))
        for layer, layer_kv in zip(self.layers, kv, strict=True):
            h = layer(h, layer_kv)
        out = self.proj_out(h)
        return out[..., : self.latent]

    def forward_memory(self, x_t: torch.Tensor, self_cond: torch.Tensor, t: torch.Tensor,
                       memory: torch.Tensor) -> torch.Tensor:
        """The same prediction with keys/values recomputed from the image tokens (training, reference)."""
        return self(x_t, self_cond, t, self.memory_kv(memory))


def _init_weights(module: nn.Module) -> None:
    # BERT's initialisation: N(0, 0.02) weights, zero biases, unit LayerNorms.
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
