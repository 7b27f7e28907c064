"""The masked diffusion captioner's inference stacks: its network passes, eager or compiled, in a dtype,
and the sampler's denoiser callable built from them (guidance, the block cache).

`Passes` is what decoding calls: the image encoder (once per call), the image tokens' cross-attention
K/V projection (once per call), the denoiser's per-step forward, and the block cache's forward over a
suffix of the positions (block_cache.py). Under `stack: compiled` the K/V projection and both forwards
are `torch.compile`d (dynamic=False: the shapes are fixed inside a call, so each step after the first
replays one graph; a new batch size, and with the block cache each new suffix length, compiles once,
at most two per block). The image encoder runs once per call and is left eager.

Under `dtype: bf16` the whole network (image encoder, null memory, denoiser) holds bfloat16 weights;
the pixels are cast to bf16 at the encoder's input and the logits back to float32 at the denoiser's
output, so the sampler's state stays as in fp32: the logits, the guidance combination, the softmax
probabilities and confidences in float32, the Gumbel noise in float64, the tokens integer. The image
and null-memory K/V are computed per call from the weights in use, so none outlives a dtype switch.

`stack: graph` (the decoding loop captured as one CUDA graph) is not offered: see
`MaskedDiffusionCaptioner.stack_notes`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from models.masked_diffusion.block_cache import BlockCache, Prefixed, prefixed_forward
from models.masked_diffusion.network import MemoryKV


@dataclass
class Passes:
    """The network passes decoding calls, under one stack and dtype."""

    encode: Callable[[torch.Tensor], torch.Tensor]  # pixels -> image tokens
    memory_kv: Callable[[torch.Tensor], MemoryKV]  # image tokens -> per-layer cross-attention K/V
    forward: Callable[[torch.Tensor, MemoryKV], torch.Tensor]  # (tokens, K/V) -> logits
    prefixed: Prefixed  # the block cache's forward over a suffix of the positions
    dtype: torch.dtype  # the weights' dtype: pixels are cast to it at the encoder's input


def make_passes(network: Any, stack: str) -> Passes:
    """The passes of `network` (an MDMNetwork) under `stack` ("eager" or "compiled")."""
    denoiser = network.denoiser
    dtype = next(denoiser.parameters()).dtype
    prefixed = partial(prefixed_forward, denoiser)
    if stack == "eager":
        return Passes(network.encode_images, denoiser.memory_kv, denoiser, prefixed, dtype)
    if stack == "compiled":
        return Passes(network.encode_images, torch.compile(denoiser.memory_kv, dynamic=False),
                      torch.compile(denoiser, dynamic=False), torch.compile(prefixed, dynamic=False), dtype)
    raise ValueError(f"mdm passes: stack {stack!r} is not accepted; accepted: 'eager', 'compiled'")


def make_denoiser(network: Any, passes: Passes, pixel_values: torch.Tensor, guidance: float,
                  block_cache: bool) -> tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[int], None] | None]:
    """The sampler's denoiser (tokens -> float32 logits, guidance applied) and its block hook (the
    block cache's `begin_block`; None without the cache). The image tokens' K/V (and the null
    memory's) are computed once here, not per step."""
    memory = passes.encode(pixel_values.to(passes.dtype))
    kv = passes.memory_kv(memory)
    rows = memory.shape[0]
    if guidance != 0:  # conditional and unconditional rows in one forward: [cond; uncond]
        null = passes.memory_kv(network.null(memory[:1]))
        kv = [(torch.cat([k, k0.expand_as(k)]), torch.cat([v, v0.expand_as(v)]))
              for (k, v), (k0, v0) in zip(kv, null, strict=True)]
    cache = BlockCache(passes.forward, passes.prefixed, kv) if block_cache else None
    net: Callable[[torch.Tensor], torch.Tensor] = cache if cache is not None else partial(passes.forward, kv=kv)

    def denoise(x: torch.Tensor) -> torch.Tensor:
        if guidance == 0:
            return net(x).float()
        logits = net(torch.cat([x, x])).float()
        return (1.0 + guidance) * logits[:rows] - guidance * logits[rows:]

    return denoise, (cache.begin_block if cache is not None else None)
