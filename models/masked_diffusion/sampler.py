"""The masked diffusion sampler: iterative unmasking, apart from the network (a callable).

Start from L [MASK] tokens. Each step runs the network on the whole sequence, takes for every masked
position its argmax token (of the logits plus temperature x Gumbel noise, LLaDA's sampling) and the
softmax probability of that token (its confidence), and commits:
- the schedule rule (LLaDA's low-confidence remasking): the k most confident, k from
  `process.transfer_counts`, so every position is committed by the last step; or
- the threshold rule (Fast-dLLM's parallel decoding): every position above `threshold`, and at least
  the most confident one, so the number of steps depends on the data (counted per caption).
Semi-autoregressive blocks (LLaDA) restrict commits to one block at a time, left to right. Committed
tokens are never re-masked. Shapes never change inside the loop (CUDA graphs / torch.compile apply).

Noise: one generator per caption, drawn in the same order whatever the tokens are, so a caption is a
function of its own seed only (never of its batch mates), and an injected run sees the same draws as
the uninjected one step for step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from models.masked_diffusion.process import block_bounds, block_steps, transfer_counts

#: denoise(tokens (batch, L)) -> logits (batch, L, vocab) over real tokens, guidance already applied.
Denoiser = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Injection:
    """Per row: before step `step[i]` (0-based; >= the steps run: after the last one), write
    `tokens[i]` at the positions `positions[i]` and count them committed (the error probe)."""

    step: list[int]
    positions: torch.Tensor  # (batch, L) bool
    tokens: torch.Tensor  # (batch, L) long, read where `positions`


@dataclass
class Trace:
    tokens: torch.Tensor  # (batch, L) the final sequence
    committed_at: torch.Tensor  # (batch, L) the step each position was committed at
    steps: list[int]  # network calls per row while it still had masked positions (before guidance)
    total_steps: int  # loop iterations run


def gumbel(shape: Sequence[int], generators: Sequence[torch.Generator], device: torch.device) -> torch.Tensor:
    """Standard Gumbel noise (batch, *shape) in float64, row i from generators[i] (LLaDA samples in
    float64: low-precision Gumbel-max is reported to lower generation quality)."""
    rows = [torch.rand(tuple(shape), generator=g, device=device, dtype=torch.float64) for g in generators]
    u = torch.stack(rows).clamp_(1e-20, 1.0 - 1e-16)
    return -torch.log(-torch.log(u))


def predict(logits: torch.Tensor, temperature: float, noise: torch.Tensor | None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """(token, confidence) per position: argmax of logits + temperature x Gumbel, and the softmax
    probability (without noise) of that token, as LLaDA's low-confidence remasking."""
    scores = logits.double() if noise is not None else logits.float()
    if noise is not None and temperature > 0:
        scores = scores + temperature * noise
    choice = scores.argmax(-1)
    confidence = logits.float().softmax(-1).gather(-1, choice.unsqueeze(-1)).squeeze(-1)
    return choice, confidence


def commit_schedule(confidence: torch.Tensor, open_: torch.Tensor, k: int, last: bool) -> torch.Tensor:
    """The k most confident open positions per row (all open ones at a block's last step)."""
    if last:
        return open_
    ranked = torch.where(open_, confidence, torch.full_like(confidence, -1.0))
    k = min(k, ranked.shape[1])
    top = torch.zeros_like(open_).scatter_(1, ranked.topk(k, dim=1).indices, True) if k else torch.zeros_like(open_)
    return top & open_


def commit_threshold(confidence: torch.Tensor, open_: torch.Tensor, threshold: float) -> torch.Tensor:
    """Every open position above the threshold, and each row's most confident open one."""
    ranked = torch.where(open_, confidence, torch.full_like(confidence, -1.0))
    best = torch.zeros_like(open_).scatter_(1, ranked.argmax(1, keepdim=True), True)
    return open_ & ((ranked > threshold) | best)


def sample(denoise: Denoiser, batch: int, length: int, mask_id: int, steps: int, *, blocks: int = 1,
           threshold: float = 0.0, temperature: float = 0.0, generators: Sequence[torch.Generator] | None = None,
           injection: Injection | None = None, device: torch.device | str = "cpu") -> Trace:
    """Decode `batch` sequences of `length` tokens; see the module docstring."""
    device = torch.device(device)
    if temperature > 0 and (generators is None or len(generators) != batch):
        raise ValueError("temperature > 0 needs one generator per row")
    x = torch.full((batch, length), mask_id, dtype=torch.long, device=device)
    committed_at = torch.full_like(x, -1)
    calls = torch.zeros(batch, dtype=torch.long, device=device)  # on the device: no sync per step
    applied = [False] * batch
    bounds = block_bounds(length, blocks)
    plan = block_steps(steps, bounds)
    step = 0
    for (start, end), block_plan in zip(bounds, plan, strict=True):
        in_block = torch.zeros(length, dtype=torch.bool, device=device)
        in_block[start:end] = True
        counts = transfer_counts(end - start, block_plan)
        iterations = block_plan if threshold <= 0 else end - start
        for i in range(iterations):
            _inject(x, committed_at, injection, applied, step, final=False)
            open_ = (x == mask_id) & in_block
            active = open_.any(1)
            if threshold > 0 and not bool(active.any()):
                break
            logits = denoise(x)
            noise = gumbel(logits.shape[1:], generators, device) if temperature > 0 else None  # type: ignore[arg-type]
            choice, confidence = predict(logits, temperature, noise)
            if threshold > 0:
                commit = commit_threshold(confidence, open_, threshold)
            else:
                commit = commit_schedule(confidence, open_, counts[i], last=i == iterations - 1)
            x = torch.where(commit, choice, x)
            committed_at = torch.where(commit, torch.full_like(committed_at, step), committed_at)
            calls += active
            step += 1
    _inject(x, committed_at, injection, applied, step, final=True)
    return Trace(x, committed_at, calls.tolist(), step)


def _inject(x: torch.Tensor, committed_at: torch.Tensor, injection: Injection | None, applied: list[bool],
            step: int, final: bool) -> None:
    if injection is None:
        return
    for row, at in enumerate(injection.step):
        if applied[row] or (at != step and not (final and at >= step)):
            continue
        where = injection.positions[row]
        x[row] = torch.where(where, injection.tokens[row], x[row])
        committed_at[row] = torch.where(where, torch.full_like(committed_at[row], step), committed_at[row])
        applied[row] = True
