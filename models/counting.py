"""What an autoregressive generation actually cost: decoder passes run and tokens generated.

`Captioner.generate` reports both per caption (bench/api.py `Generation`); the latency phase records
them next to every timing, so a table shows the work done, not the `max_new_tokens` upper bound.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def counted_calls(module: torch.nn.Module) -> Iterator[list[int]]:
    """Count the forward calls of `module` inside the block (read `counter[0]` after it).

    Hugging Face `generate` runs the decoder once per generation step on every row of the batch at once
    (all beams of all images), so at batch size 1 this is the caption's number of decoder passes.
    """
    counter = [0]

    def count(_module, _inputs) -> None:
        counter[0] += 1

    handle = module.register_forward_pre_hook(count)
    try:
        yield counter
    finally:
        handle.remove()


def tokens_before_end(ids: torch.Tensor, end_ids: set[int]) -> list[int]:
    """Per row of generated ids (prompt removed), the tokens before the first end id (what follows it
    is padding: a finished row waits for its batch mates)."""
    counts = []
    for row in ids.tolist():
        stop = next((i for i, token in enumerate(row) if token in end_ids), len(row))
        counts.append(stop)
    return counts
