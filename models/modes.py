"""Train/eval mode handling shared by the captioners' sampling loops."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """`module` in eval mode inside the block; afterwards every submodule's own mode is put back (a
    decoding probe in the middle of training must not leave dropout off, nor turn on a frozen part)."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training
