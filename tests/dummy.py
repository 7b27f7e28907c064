"""A dummy captioner for harness tests: known delay per network evaluation, known captions."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.api import Captioner, CaptionerConfig, Knob


@dataclass
class DummyConfig(CaptionerConfig):
    seconds_per_eval: float = 0.01


class DummyCaptioner(Captioner):
    """A 'diffusion' captioner whose every network evaluation sleeps a known time (2 per step)."""

    paradigm = "diffusion"
    trainable = False
    knobs = (Knob("steps", int, 5, sweep=(1, 5), cost=True, label="sampling steps"),)
    variants = {"dummy": DummyConfig()}

    def preprocess(self, image, train=False):
        return torch.zeros(3, 4, 4)

    def caption(self, pixel_values, steps: int = 5):
        time.sleep(self.config.seconds_per_eval * self.decode_cost(steps=steps))
        return ["a dummy caption"] * len(pixel_values)

    def decode_cost(self, steps: int = 5) -> int:
        return 2 * steps

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)

    @classmethod
    def load(cls, directory: Path):
        return cls(DummyConfig())
