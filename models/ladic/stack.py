"""LaDiC's inference stacks: the network passes of the optimized sampler, eager or compiled, in a dtype.

`Passes` is what the optimized sampler calls: the image encoder, the K/V projection of the image
tokens and the diffuser's forward. Under `stack: compiled` each is a `torch.compile` of the same
module (shapes are static inside the sampling loop, so every step after the first replays one
compiled graph). Under `dtype: bf16` the image encoder and the diffuser hold bfloat16 weights (the
latent head and its statistics stay float32); the sampler's state (x_t, the self-condition, the
noise) stays float32 and is cast to bf16 only at the diffuser's input, its prediction cast back.

`stack: graph` (the whole sampling loop captured as one CUDA graph) is not offered: see
`LaDiCCaptioner.stack_notes`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from models.ladic.diffuser import MemoryKV


@dataclass
class Passes:
    """The optimized sampler's network passes under one stack and dtype."""

    encode: Callable[[torch.Tensor], torch.Tensor]  # pixels -> image tokens
    memory_kv: Callable[[torch.Tensor], MemoryKV]  # image tokens -> per-layer K/V
    diffuser: Callable[..., torch.Tensor]  # (x_t, self_cond, t, kv) -> x0 prediction
    dtype: torch.dtype  # the weights' dtype: pixels and the sampler's state are cast to it at the input

    def kv(self, pixel_values: torch.Tensor) -> MemoryKV:
        """K/V of the images' tokens (pixels cast to the weights' dtype first)."""
        return self.memory_kv(self.encode(pixel_values.to(self.dtype)))

    def predict(self, x: torch.Tensor, self_cond: torch.Tensor, t: torch.Tensor, kv: MemoryKV) -> torch.Tensor:
        """x0 prediction in float32 from float32 sampler state."""
        return self.diffuser(x.to(self.dtype), self_cond.to(self.dtype), t, kv).float()


def make_passes(network: Any, stack: str) -> Passes:
    """The passes of `network` (a LaDiCNetwork) under `stack` ("eager" or "compiled")."""
    dtype = next(network.diffuser.parameters()).dtype
    if stack == "eager":
        return Passes(network.encode_images, network.diffuser.memory_kv, network.diffuser, dtype)
    if stack == "compiled":
        # dynamic=False: batch and length are fixed inside one caption call; a new batch size
        # recompiles once rather than tracing symbolic shapes on every step.
        return Passes(torch.compile(network.encode_images, dynamic=False),
                      torch.compile(network.diffuser.memory_kv, dynamic=False),
                      torch.compile(network.diffuser, dynamic=False), dtype)
    raise ValueError(f"LaDiC passes: stack {stack!r} is not accepted; accepted: 'eager', 'compiled'")
