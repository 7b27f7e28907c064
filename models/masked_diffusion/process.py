"""The absorbing-state (masked) forward process, its training loss and the unmasking schedule.

Apart from the network, as diffusers' schedulers: nothing here sees a module.

- Forward process (MDLM, linear schedule alpha_t = 1 - t): each token of a clean sequence is replaced
  by [MASK] independently with probability t, t ~ U(eps, 1).
- Loss (MDLM's continuous-time ELBO for that schedule; the form LLaDA's guidelines give): cross-entropy
  on the masked positions only, each weighted by 1/t, summed over positions and divided by
  batch x L. Unmasked positions carry no loss.
- Schedule (LLaDA's `get_num_transfer_tokens`): n masked positions over s steps commit n // s per
  step, the remainder n % s one more each in the first steps, so all are committed by the last step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_t(batch: int, eps: float, low_discrepancy: bool = True,
             generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """Noise levels (batch,) in [eps, 1).

    low_discrepancy (MDLM): one uniform u, then t_i = (u + i / batch) mod 1, mapped to [eps, 1): the
    batch covers the unit interval evenly, so the loss has the same expectation with less variance.
    """
    if low_discrepancy:
        u = torch.rand(1, generator=generator, device=device)
        u = (u + torch.arange(batch, device=device) / batch) % 1.0
    else:
        u = torch.rand(batch, generator=generator, device=device)
    return eps + (1.0 - eps) * u


def add_noise(ids: torch.Tensor, t: torch.Tensor, mask_id: int,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(noisy ids, masked) of clean ids (batch, L): each position masked with probability t[row]."""
    draws = torch.rand(ids.shape, generator=generator, device=ids.device)
    masked = draws < t[:, None]
    return torch.where(masked, torch.full_like(ids, mask_id), ids), masked


def masked_loss(logits: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor,
                t: torch.Tensor) -> torch.Tensor:
    """sum over masked positions of CE / t, divided by batch x L (logits: (batch, L, vocab))."""
    ce = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none").view(targets.shape)
    weighted = ce * masked / t[:, None]
    return weighted.sum() / targets.numel()


def transfer_counts(masked: int, steps: int) -> list[int]:
    """Tokens committed at each of `steps` steps for `masked` masked positions (remainder first)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    base, extra = divmod(masked, steps)
    return [base + (1 if i < extra else 0) for i in range(steps)]


def block_bounds(length: int, blocks: int) -> list[tuple[int, int]]:
    """[start, end) of `blocks` contiguous blocks covering `length` positions (first blocks longer)."""
    if not 1 <= blocks <= length:
        raise ValueError(f"blocks must be in 1..{length} (the caption length), got {blocks}")
    sizes = transfer_counts(length, blocks)
    bounds, start = [], 0
    for size in sizes:
        bounds.append((start, start + size))
        start += size
    return bounds


def block_steps(steps: int, blocks: list[tuple[int, int]]) -> list[int]:
    """Steps per block: `steps` split evenly (remainder first), at least one per block and never more
    than the block's length (a step that commits nothing would still cost a network evaluation)."""
    per_block = transfer_counts(max(steps, len(blocks)), len(blocks))
    return [min(s, end - start) for s, (start, end) in zip(per_block, blocks, strict=True)]
