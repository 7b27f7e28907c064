"""The masked diffusion sampler: iterative unmasking, apart from the network (a callable).

Start from L [MASK] tokens. Each step runs the network on the whole sequence, takes for every masked
position its argmax token (of the logits plus temperature x Gumbel noise, LLaDA's sampling; at
temperature 1 a draw from the model's distribution) and a score per position, and commits:
- the schedule rule: the k highest-scoring, k from `process.transfer_counts`, so every position is
  committed by the last step; the score is the softmax probability of the chosen token (LLaDA's
  remasking='low_confidence') or a uniform draw (remasking='random': the positions to unmask chosen at
  random, MDLM's ancestral sampler with LLaDA's fixed count per step); or
- the threshold rule (Fast-dLLM's parallel decoding, low-confidence only): every position above
  `threshold`, and at least the most confident one, so the number of steps depends on the data.
Semi-autoregressive blocks (LLaDA) restrict commits to one block at a time, left to right. Committed
tokens are never re-masked. Shapes never change inside the loop (CUDA graphs / torch.compile apply).

Steps are counted per row: a row's counter is the number of network calls it has used, i.e. the
passes during which it still had masked positions in its current block (under the threshold rule a
row that finished a block early waits, and its counter stands still, while its batch mates go on).
Noise comes from one generator per row and is drawn only on the row's own steps, in the same order
whatever the tokens are; an injection is due at the row's own step. So a caption is a function of its
own seed only, never of its batch mates, and an injected run sees the same draws as the uninjected
one step for step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from models.masked_diffusion.config import REMASKING
from models.masked_diffusion.process import block_bounds, block_steps, transfer_counts

#: denoise(tokens (batch, L)) -> logits (batch, L, vocab) over real tokens, guidance already applied.
Denoiser = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Injection:
    """Per row: before the row's own step `step[i]` (0-based; >= the steps it runs: after its last
    one), write `tokens[i]` at the positions `positions[i]` and count them committed (the error probe)."""

    step: list[int]
    positions: torch.Tensor  # (batch, L) bool
    tokens: torch.Tensor  # (batch, L) long, read where `positions`


@dataclass
class Trace:
    tokens: torch.Tensor  # (batch, L) the final sequence
    committed_at: torch.Tensor  # (batch, L) the row's own step each position was committed at
    steps: list[int]  # network calls per row while it still had masked positions (before guidance)
    total_steps: int  # loop iterations run
    blocks: list[tuple[int, int]]  # [start, end) of each block
    block_starts: torch.Tensor  # (batch, blocks + 1): each row's step counter as each block began, then its total


def gumbel(shape: Sequence[int], generators: Sequence[torch.Generator], device: torch.device,
           rows: Sequence[bool] | None = None) -> torch.Tensor:
    """Standard Gumbel noise (batch, *shape) in float64, row i from generators[i] (LLaDA samples in
    float64: low-precision Gumbel-max is reported to lower generation quality); only the rows marked in
    `rows` draw (zeros elsewhere)."""
    return -torch.log(-torch.log(uniform(shape, generators, device, rows, low=1e-20, high=1.0 - 1e-16)))


def uniform(shape: Sequence[int], generators: Sequence[torch.Generator], device: torch.device,
            rows: Sequence[bool] | None = None, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """U(0, 1) draws (batch, *shape) in float64 clamped to [low, high], row i from generators[i]; only
    the rows marked in `rows` draw (the value `high` elsewhere, whose Gumbel transform is finite)."""
    rows = [True] * len(generators) if rows is None else rows
    out = [torch.rand(tuple(shape), generator=g, device=device, dtype=torch.float64) if draw
           else torch.full(tuple(shape), high, device=device, dtype=torch.float64)
           for g, draw in zip(generators, rows, strict=True)]
    return torch.stack(out).clamp_(low, high)


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
           threshold: float = 0.0, temperature: float = 0.0, remasking: str = "low_confidence",
           generators: Sequence[torch.Generator] | None = None, injection: Injection | None = None,
           device: torch.device | str = "cpu", on_block: Callable[[int], None] | None = None) -> Trace:
    """Decode `batch` sequences of `length` tokens; see the module docstring. `on_block(start)` is
    called as each block begins: every position before `start` is then committed (the block cache's
    hook, block_cache.py; the sampler itself never depends on it)."""
    device = torch.device(device)
    if remasking not in REMASKING:
        raise ValueError(f"remasking must be one of {REMASKING}, got {remasking!r}")
    if remasking == "random" and threshold > 0:
        raise ValueError("remasking='random' commits by the step schedule: it needs threshold 0")
    draws = temperature > 0 or remasking == "random"
    if draws and (generators is None or len(generators) != batch):
        raise ValueError("temperature > 0 or remasking='random' needs one generator per row")
    x = torch.full((batch, length), mask_id, dtype=torch.long, device=device)
    committed_at = torch.full_like(x, -1)
    calls = torch.zeros(batch, dtype=torch.long, device=device)  # each row's own step counter (no sync)
    pending = torch.ones(batch if injection else 0, dtype=torch.bool, device=device)
    inject_at = torch.tensor(injection.step if injection else [], dtype=torch.long, device=device)
    bounds = block_bounds(length, blocks)
    starts, total = [], 0
    for (start, end), block_plan in zip(bounds, block_steps(steps, bounds), strict=True):
        starts.append(calls.clone())
        if on_block is not None:
            on_block(start)
        in_block = torch.zeros(length, dtype=torch.bool, device=device)
        in_block[start:end] = True
        counts = transfer_counts(end - start, block_plan)
        iterations = block_plan if threshold <= 0 else end - start
        for i in range(iterations):
            open_ = (x == mask_id) & in_block
            if injection is not None:  # due before the row's own step, when it is about to take it
                due = pending & open_.any(1) & (inject_at == calls)
                x, committed_at = _inject(x, committed_at, injection, due, calls)
                pending &= ~due
                open_ = (x == mask_id) & in_block
            active = open_.any(1)
            if threshold > 0 and not bool(active.any()):
                break
            logits = denoise(x)
            rows = active.tolist() if draws else None  # only the rows still decoding draw (one sync a step)
            noise = gumbel(logits.shape[1:], generators, device, rows) if temperature > 0 else None  # type: ignore[arg-type]
            choice, score = predict(logits, temperature, noise)
            if remasking == "random":
                score = uniform(logits.shape[1:2], generators, device, rows).float()  # type: ignore[arg-type]
            if threshold > 0:
                commit = commit_threshold(score, open_, threshold)
            else:
                commit = commit_schedule(score, open_, counts[i], last=i == iterations - 1)
            x = torch.where(commit, choice, x)
            committed_at = torch.where(commit, calls[:, None].expand_as(x), committed_at)
            calls += active
            total += 1
    if injection is not None:  # due at or after the row's last step: after it
        x, committed_at = _inject(x, committed_at, injection, pending, calls)
    starts.append(calls)
    return Trace(x, committed_at, calls.tolist(), total, bounds, torch.stack(starts, 1))


def _inject(x: torch.Tensor, committed_at: torch.Tensor, injection: Injection, due: torch.Tensor,
            calls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Write the injected tokens of the rows `due`, committed at each row's own step."""
    where = injection.positions.to(x.device) & due[:, None]
    x = torch.where(where, injection.tokens.to(x.device), x)
    return x, torch.where(where, calls[:, None].expand_as(x), committed_at)
