"""LaDiC's diffusion process, apart from the network (the sampler takes the network as a callable).

- Linear betas `beta_start..beta_end` over T steps, with alpha_bar_0 = 1 prepended: alpha_bar[t] for
  t = 0..T, alpha_bar[0] = 1 (clean), alpha_bar[t] = prod_{s<t} (1 - beta_s).
- The network predicts x0. Forward noising with variance dilation d:
  x_t = sqrt(alpha_bar_t) x0 + d sqrt(1 - alpha_bar_t) eps.
- Sampling: `steps` iterations over timesteps T-1 = t_0 > t_1 > ... (integer linspace, so steps=5
  gives 999, 799, 599, 399, 199 as the released code's first commit). Each iteration predicts x0 with
  the network fed min(T-1, t + time_difference) (Bit Diffusion's time difference), and re-noises the
  prediction to the next level with fresh noise; the last prediction is the output.
- Back&Refine (once): at the first iteration with low < t < high, the confidence of each position is
  measured, the prediction is re-noised to the next level, the k least-confident positions are
  replaced by N(0, 1), and the schedule restarts from t_0.
- Classifier-free guidance is the network callable's business (`guide` combines the two passes).

Noise comes from `NoiseSource`: one generator per image, seeded from (seed, the image's identity)
(models/seeding.py), so a draw is a function of (image, seed, candidate, draw number) only: a caption
never depends on its batch mates, and different images get independent noise (no random effect shared
by a whole split).

Error-propagation probe (`Injection`): at the first iteration (in the order run) whose level is at or
below a chosen t, the previous prediction of x0 is overwritten at chosen positions before it is
re-noised to that level (and fed as the self-condition), so the noise draws stay those of the
uninjected run and only the overwritten latent differs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

#: denoise(x_t, self_cond, t_in) -> predicted x0 (guided); t_in is a (batch,) long tensor.
Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def linear_alpha_bar(timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """alpha_bar[0..T] (float64) of the linear schedule, alpha_bar[0] = 1."""
    betas = torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
    return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1.0 - betas, dim=0)])


def guide(cond: torch.Tensor, uncond: torch.Tensor, weight: float) -> torch.Tensor:
    """Classifier-free guidance on x0: (1 + w) cond - w uncond."""
    return (1.0 + weight) * cond - weight * uncond


def replace_least_confident(x: torch.Tensor, confidence: torch.Tensor, k: int,
                            noise: torch.Tensor) -> torch.Tensor:
    """x with each row's k least-confident positions (batch, tokens) replaced by `noise` there."""
    index = confidence.topk(k, dim=1, largest=False).indices
    mask = torch.zeros_like(confidence, dtype=torch.bool).scatter_(1, index, True)
    return torch.where(mask.unsqueeze(-1), noise, x)


class NoiseSource:
    """Gaussian draws shaped (batch * candidates, tokens, width), image-major (row = b * n + j).

    Image b has its own generator seeded with `seeds[b]` (see models/seeding.py `image_seeds`) and draws
    (candidates, tokens, width) per call, so an image's noise depends on its seed alone (never on its
    batch mates or its place in the batch), and MBR candidate j gets its own noise.
    """

    def __init__(self, seeds: Sequence[int], candidates: int, tokens: int, width: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, scale: float = 1.0):
        self.generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
        self.shape = (candidates, tokens, width)
        self.device, self.dtype = device, dtype
        self.scale = float(scale)  # the sampling temperature: every draw's standard deviation

    def draw(self) -> torch.Tensor:
        noise = torch.cat([torch.randn(self.shape, generator=g, device=self.device, dtype=self.dtype)
                           for g in self.generators])
        return noise if self.scale == 1.0 else noise * self.scale

    def get_state(self) -> list[torch.Tensor]:
        return [g.get_state() for g in self.generators]

    def set_state(self, states: list[torch.Tensor]) -> None:
        for g, state in zip(self.generators, states, strict=True):
            g.set_state(state)


@dataclass
class Injection:
    """Overwrite x0 at `mask` (rows, tokens) with `values` (rows, tokens, width) before re-noising to
    the first level <= `t` the sampler reaches (the probe of bench/metrics/errprop.py)."""

    t: int
    mask: torch.Tensor
    values: torch.Tensor


@dataclass
class SamplerState:
    """Where a run stands at the top of an iteration, the noise generators' states included: a run
    resumed from it draws exactly what the original run drew from there on."""

    i: int
    x: torch.Tensor
    eps: torch.Tensor  # the draw x was noised with (an injection re-noises with it)
    self_cond: torch.Tensor
    x0: torch.Tensor
    calls: int
    refined_at: int | None
    generators: list[torch.Tensor]


@dataclass
class SampleTrace:
    x0: torch.Tensor
    calls: int  # denoiser calls (each is 1 or 2 network evaluations per sample, by guidance)
    refined_at: int | None  # iteration Back&Refine fired at, if it did
    injected_at: int | None = None  # level (t) the injection was made at, if one was asked for
    paused: SamplerState | None = None  # the state at `pause_at`, when asked for


@dataclass(frozen=True)
class Refine:
    """Back&Refine settings: fire once at the first step with low < t < high, re-noise k positions."""

    low: int = 300
    high: int = 600
    k: int = 8


class Diffusion:
    """Schedule, forward noising and the strided x0 sampler of LaDiC."""

    def __init__(self, timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
                 time_difference: int = 5):
        self.T = timesteps
        self.time_difference = time_difference
        self.alpha_bar = linear_alpha_bar(timesteps, beta_start, beta_end)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor | int, noise: torch.Tensor,
                 dilation: float = 1.0) -> torch.Tensor:
        """x_t = sqrt(ab_t) x0 + d sqrt(1 - ab_t) noise; t is one int or a (batch,) tensor."""
        if isinstance(t, int):  # sampling: python scalars keep the loop's graph free of lookups
            ab = float(self.alpha_bar[t])
            return math.sqrt(ab) * x0 + dilation * math.sqrt(1.0 - ab) * noise
        ab = self.alpha_bar.to(x0.device)[t].to(x0.dtype).view(-1, *([1] * (x0.dim() - 1)))
        return ab.sqrt() * x0 + dilation * (1.0 - ab).sqrt() * noise

    def sample_t(self, batch: int, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
        """Training timesteps, uniform over 0..T-1."""
        return torch.randint(0, self.T, (batch,), generator=generator, device=device)

    def timesteps(self, steps: int) -> list[int]:
        """The `steps` sampling levels, from T-1 downward in (near-)equal strides."""
        if not 1 <= steps <= self.T:
            raise ValueError(f"steps must be in 1..{self.T}, got {steps}")
        return [self.T - 1 - (i * self.T) // steps for i in range(steps)]

    def refine_iteration(self, steps: int, refine: Refine | None) -> int | None:
        """Index of the iteration Back&Refine fires at, or None when no level lies in its window."""
        if refine is None:
            return None
        for i, t in enumerate(self.timesteps(steps)):
            if refine.low < t < refine.high:
                return i
        return None

    def num_calls(self, steps: int, refine: Refine | None) -> int:
        """Denoiser calls of `sample`: steps, plus the iterations before the restart if it refines."""
        fired = self.refine_iteration(steps, refine)
        return steps + (0 if fired is None else fired + 1)

    def _reaches(self, t: int, point: int | None, calls: int) -> bool:
        # Never at the start or at a restart (t = T-1, where x is not one eps away from a prediction).
        return point is not None and calls > 0 and t <= point < self.T - 1

    @torch.no_grad()
    def sample(self, denoise: Denoiser, noise: NoiseSource, steps: int, dilation: float = 1.0,
               refine: Refine | None = None,
               confidence: Callable[[torch.Tensor], torch.Tensor] | None = None,
               inject: Injection | None = None, pause_at: int | None = None,
               resume: SamplerState | None = None) -> SampleTrace:
        """Run the sampler; `confidence(x0) -> (batch, tokens)` is needed when `refine` is set.
        `inject` overwrites the prediction once (module docstring); the noise draws are unchanged.
        `pause_at` records the state at the first iteration whose level is <= it (the point an
        injection there would be made at), and `resume` starts from such a state."""
        levels = self.timesteps(steps)
        fire_at = self.refine_iteration(steps, refine)
        if fire_at is not None and confidence is None:
            raise ValueError("Back&Refine needs a confidence function")
        if resume is None:
            x = eps = noise.draw()
            i, self_cond, x0, calls, refined_at = 0, torch.zeros_like(x), x, 0, None
        else:
            noise.set_state(resume.generators)
            i, x, eps, self_cond, x0 = resume.i, resume.x, resume.eps, resume.self_cond, resume.x0
            calls, refined_at = resume.calls, resume.refined_at
        injected_at, paused = None, None
        while i < len(levels):
            t = levels[i]
            if paused is None and self._reaches(t, pause_at, calls):
                paused = SamplerState(i, x, eps, self_cond, x0, calls, refined_at, noise.get_state())
            if inject is not None and injected_at is None and self._reaches(t, inject.t, calls):
                # x holds q(x0_prev, t, eps): rebuild it from the overwritten x0 with the same eps.
                x0 = torch.where(inject.mask.unsqueeze(-1), inject.values.to(x0.dtype), x0)
                x = self.q_sample(x0, t, eps, dilation)
                self_cond, injected_at = x0, t
            t_in = torch.full((x.shape[0],), min(self.T - 1, t + self.time_difference),
                              dtype=torch.long, device=x.device)
            x0 = denoise(x, self_cond, t_in)
            calls += 1
            self_cond = x0
            t_next = levels[i + 1] if i + 1 < len(levels) else 0
            if refined_at is None and i == fire_at:
                assert refine is not None and confidence is not None
                x = self.q_sample(x0, t_next, noise.draw(), dilation)
                x = replace_least_confident(x, confidence(x0), refine.k, noise.draw())
                refined_at, i = i, 0  # back to t = T-1, with the confident positions kept
                continue
            if i + 1 == len(levels):
                break
            eps = noise.draw()
            x = self.q_sample(x0, t_next, eps, dilation)
            i += 1
        return SampleTrace(x0=x0, calls=calls, refined_at=refined_at, injected_at=injected_at, paused=paused)
