"""Fast-dLLM's block (prefix) cache for semi-autoregressive decoding: the committed blocks' self-attention
keys/values computed once and reused while later blocks are decoded.

Fast-dLLM (Wu et al., arXiv 2505.22618, "prefix cache"): with blocks decoded left to right, every
position before the current block is committed and never changes again. So at the first step of a
block the network runs over the positions from the end of what is already cached, and the keys/values
(per layer) of the block just committed are stored; the block's later steps run only over the
positions from the current block on, attending to the stored keys/values of the prefix. Decoding
block b then costs (L - start_b) positions per step instead of L.

What it approximates (the network is bidirectional, so this is not exact):
- Without the cache every step recomputes every position, and a committed position's hidden states
  (hence its keys/values) attend to the later positions as they are now. With the cache a committed
  block's keys/values are those of the first step of the next block: they saw the later positions as
  they were then (the next block and the rest still [MASK]) and never see them again as they are
  committed. Only steps that read a stored prefix differ from the uncached run: the first block, and
  the first step of the second block (nothing is stored yet, it runs over all L positions), are exact.
- Blocks stored at different times are not refreshed: block 0's keys/values, stored at block 1's first
  step, are reused unchanged at block 2 (Fast-dLLM refreshes the whole prefix at each block; storing
  each block once is the cheaper of the two and what this option promises).
- With one block nothing is ever committed before the last step, so nothing is cached: `blocks: 1`
  with the cache decodes exactly as without it.

A network evaluation stays one denoiser call per step (the sampler's count, x 2 with guidance): with
the cache a call covers fewer positions, so an evaluation costs less, but it is counted the same.
The logits of the cached (committed) positions are not computed; they are returned as zeros, which
the sampler never reads (it commits only masked positions) and which keep the logits' shape, so the
noise drawn per step is the same as without the cache.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from models.masked_diffusion.network import MaskedDenoiser, MemoryKV

SelfKV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: (rows, heads, P, head_dim) keys, values
#: (tokens (rows, N), offset, image K/V, prefix K/V or None) -> (logits (rows, N, V), the N positions' K/V)
Prefixed = Callable[[torch.Tensor, int, MemoryKV, SelfKV | None], tuple[torch.Tensor, SelfKV]]


def prefixed_forward(denoiser: MaskedDenoiser, tokens: torch.Tensor, offset: int, kv: MemoryKV,
                     prefix: SelfKV | None) -> tuple[torch.Tensor, SelfKV]:
    """The denoiser's forward (inference, pre-LN) over the positions offset .. offset + N - 1 whose
    self-attention also reads the `prefix` keys/values of positions 0 .. offset - 1; returns the
    logits of these positions and their own keys/values per layer. With offset 0 and no prefix it is
    `denoiser(tokens, kv)` (same operations in the same order; a test holds the two together)."""
    if denoiser.training:
        raise RuntimeError("the block cache is for decoding: put the network in eval mode")
    h = denoiser.drop(denoiser.embed(tokens) + denoiser.positions[offset: offset + tokens.shape[1]])
    stored = []
    for n, (layer, memory) in enumerate(zip(denoiser.layers, kv, strict=True)):
        # CrossAttentionLayer.forward for pre_norm=True, dropout off, with the prefix's keys/values
        # joined to the positions' own (written out here: the shared layer returns no keys/values).
        q, k, v = (layer._split(y) for y in layer.qkv(layer.norm1(h)).chunk(3, dim=-1))
        keys, values = (k, v) if prefix is None else (torch.cat([prefix[n][0], k], 2), torch.cat([prefix[n][1], v], 2))
        h = h + layer.drop(layer.self_out(layer._merge(F.scaled_dot_product_attention(q, keys, values))))
        q = layer._split(layer.cross_q(layer.norm2(h)))
        h = h + layer.drop(layer.cross_out(layer._merge(F.scaled_dot_product_attention(q, *memory))))
        h = h + layer.drop(layer.ffn(layer.norm3(h)))
        stored.append((k, v))
    return denoiser.head(denoiser.norm(h)), stored


class BlockCache:
    """The denoiser over one call's image K/V, with the committed prefix's keys/values cached.

    `begin_block(start)` (the sampler's hook, at each block's start) says positions 0 .. start - 1 are
    committed for good; the next call stores their keys/values (those not stored yet) and later calls
    run only from `start` on. If a stored position's token has changed since (the error probe may write
    a committed position), the prefix is recomputed from position 0 rather than served stale.
    `stored` counts the positions whose keys/values were stored (tests check each is stored once)."""

    def __init__(self, forward: Callable[[torch.Tensor, MemoryKV], torch.Tensor], prefixed: Prefixed,
                 kv: MemoryKV):
        self.forward, self.prefixed, self.kv = forward, prefixed, kv
        self.frozen = 0  # positions 0 .. frozen - 1 are committed for good
        self.prefix: SelfKV | None = None  # their stored keys/values, 0 .. cached - 1
        self.tokens: torch.Tensor | None = None  # the tokens the stored keys/values were computed from
        self.stored = 0

    @property
    def cached(self) -> int:
        return 0 if self.tokens is None else self.tokens.shape[1]

    def begin_block(self, start: int) -> None:
        """Positions before `start` are committed and will not change (blocks go left to right)."""
        self.frozen = start

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (rows, L, V) of `x` (rows, L): zeros at the cached positions (never read)."""
        if self.frozen == 0:
            return self.forward(x, self.kv)  # the first block: nothing committed, the plain forward
        if self.tokens is not None and not torch.equal(x[:, : self.cached], self.tokens):
            self.prefix, self.tokens = None, None
        offset = self.cached
        logits, own = self.prefixed(x[:, offset:], offset, self.kv, self.prefix)
        if self.frozen > offset:  # store the newly committed positions' keys/values, once
            new = self.frozen - offset
            fresh = [(k[:, :, :new], v[:, :, :new]) for k, v in own]
            self.prefix = fresh if self.prefix is None else [
                (torch.cat([pk, k], 2), torch.cat([pv, v], 2)) for (pk, pv), (k, v) in zip(self.prefix, fresh, strict=True)]
            self.tokens = x[:, : self.frozen].clone()
            self.stored += new
        out = logits.new_zeros(x.shape[0], x.shape[1], logits.shape[-1])
        out[:, offset:] = logits
        return out
