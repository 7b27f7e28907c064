"""The inference stack of captioners that decode with transformers' `generate` (ViT-GPT2; BLIP and GIT
take bf16 only: see `PretrainedCaptioner.stack_notes`).

`stack: compiled` is a static KV cache (`cache_implementation="static"`, preallocated to the longest
generation, so every decoding step has the same shapes) and the decoder's forward under torch.compile
(ViT-GPT2 compiles it itself: transformers' generate compiles on its own only greedy or sampled decoding,
only on an accelerator, and declined to for this encoder-decoder cache when forced on a CPU).
`dtype: bf16`: the weights are converted (Captioner.convert_weights) and the pixels cast to them.
"""

from __future__ import annotations

from typing import Any

import torch


def generate_options(captioner: Any) -> dict[str, Any]:
    """Extra `generate` arguments for the captioner's inference stack (eager: none)."""
    if captioner.inference_stack == "compiled":
        return {"cache_implementation": "static"}
    return {}


def weights_dtype(module: torch.nn.Module) -> torch.dtype:
    """The dtype inputs are cast to: the first floating-point parameter's."""
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)
