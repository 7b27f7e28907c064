"""An exponential moving average of trainable weights, for evaluation (MDLM's recipe; bench/train.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


class EMA:
    """shadow <- decay x shadow + (1 - decay) x weights after each optimizer step, from the weights at
    the start: after n steps, decay**n x w_0 + (1 - decay) x sum_k decay**(n - k) x w_k."""

    def __init__(self, params: list[torch.nn.Parameter], decay: float):
        self.params, self.decay = params, decay
        self.shadow = [p.detach().clone() for p in params]

    @torch.no_grad()
    def update(self) -> None:
        for s, p in zip(self.shadow, self.params, strict=True):
            s.mul_(self.decay).add_(p.detach(), alpha=1.0 - self.decay)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "shadow": self.shadow}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any] | None, where: Path) -> None:
        shadow = (state or {}).get("shadow")
        if shadow is None or [s.shape for s in shadow] != [p.shape for p in self.params]:
            raise ValueError(f"{where}: the checkpoint holds no EMA of these weights, but train.ema is "
                             f"{self.decay}: resume with the settings it was written with, or delete it")
        for s, saved in zip(self.shadow, shadow, strict=True):
            s.copy_(saved)

    @torch.no_grad()
    def copy_to_weights(self) -> None:
        for s, p in zip(self.shadow, self.params, strict=True):
            p.copy_(s)
