"""LaDiC's diffusion process on its own: schedule, forward noising, sampler, Back&Refine, MBR."""

from __future__ import annotations

import math

import pytest
import torch

from models.ladic.diffusion import (
    Diffusion,
    Injection,
    NoiseSource,
    Refine,
    guide,
    linear_alpha_bar,
    replace_least_confident,
)
from models.ladic.mbr import mbr_index, mbr_select, sentence_bleu


def test_schedule_matches_closed_form():
    ab = linear_alpha_bar(1000, 1e-4, 0.02)
    assert ab.shape == (1001,)
    assert ab[0] == 1.0  # alpha_bar_0 = 1 prepended: t = 0 is the clean latent
    for t in (1, 2, 10, 300, 999, 1000):
        closed = math.prod(1 - (1e-4 + i * (0.02 - 1e-4) / 999) for i in range(t))
        assert ab[t].item() == pytest.approx(closed, rel=1e-9)
    assert torch.all(ab[1:] < ab[:-1])  # strictly decreasing


def test_q_sample_mean_and_variance():
    diffusion = Diffusion()
    x0 = torch.full((200_000, 1), 1.5, dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    for t, d in ((0, 4.0), (100, 1.0), (500, 4.0), (999, 1.0)):
        noise = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
        xt = diffusion.q_sample(x0, torch.full((len(x0),), t), noise, dilation=d)
        ab = diffusion.alpha_bar[t].item()
        assert xt.mean().item() == pytest.approx(math.sqrt(ab) * 1.5, abs=0.02 * d + 1e-9)
        assert xt.var().item() == pytest.approx(d * d * (1 - ab), rel=0.02, abs=1e-12)
        # the scalar-t path (used while sampling) is the same map
        assert torch.allclose(diffusion.q_sample(x0[:5], t, noise[:5], d), xt[:5])


def test_timesteps_are_strided_from_t_minus_one():
    diffusion = Diffusion()
    assert diffusion.timesteps(1) == [999]
    assert diffusion.timesteps(5) == [999, 799, 599, 399, 199]  # the released code's first commit
    for steps in (2, 10, 30, 34, 1000):
        levels = diffusion.timesteps(steps)
        assert len(levels) == steps and levels[0] == 999 and levels[-1] >= 0
        assert all(a > b for a, b in zip(levels, levels[1:], strict=False))


class CountingDenoiser:
    """A stand-in network: deterministic in its inputs, counts its calls and timesteps."""

    def __init__(self):
        self.calls, self.t_seen = 0, []

    def __call__(self, x, self_cond, t):
        self.calls += 1
        self.t_seen.append(int(t[0]))
        return 0.5 * x + 0.25 * self_cond + 0.001 * t.view(-1, 1, 1)


@pytest.mark.parametrize("steps,refine", [(1, None), (5, None), (5, Refine(k=2)), (10, Refine(k=2)),
                                          (30, Refine(k=2))])
def test_sampler_calls_and_determinism(steps, refine):
    diffusion = Diffusion()
    confidence = lambda x0: x0.mean(-1)  # noqa: E731

    def run(seed):
        net = CountingDenoiser()
        trace = diffusion.sample(net, NoiseSource([seed, seed + 100, seed + 200], 1, 6, 4), steps, 1.0, refine,
                                 confidence)
        return net, trace

    net, trace = run(seed=7)
    again = run(seed=7)[1]
    assert torch.equal(trace.x0, again.x0)  # same seed, same output
    assert not torch.equal(trace.x0, run(seed=8)[1].x0)
    assert net.calls == trace.calls == diffusion.num_calls(steps, refine)
    # time difference: the network sees t + 5, capped at T - 1
    assert net.t_seen[0] == 999 and net.t_seen[-1] == min(999, diffusion.timesteps(steps)[-1] + 5)
    fired = diffusion.refine_iteration(steps, refine)
    assert trace.refined_at == fired
    if fired is not None:  # the schedule restarted from the top once
        assert net.t_seen.count(999) == 2 and net.calls == steps + fired + 1


def test_back_and_refine_fires_once_inside_its_window():
    diffusion = Diffusion()
    assert diffusion.refine_iteration(1, Refine()) is None  # only t = 999: outside 300 < t < 600
    assert diffusion.refine_iteration(5, Refine()) == 2  # t = 599
    assert diffusion.num_calls(5, Refine()) == 8
    assert diffusion.num_calls(5, None) == 5


def test_replace_least_confident_renoises_exactly_k_positions():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 24, 8, generator=generator)
    noise = torch.randn(4, 24, 8, generator=generator)
    confidence = torch.rand(4, 24, generator=generator)
    out = replace_least_confident(x, confidence, 8, noise)
    for row in range(4):
        changed = (out[row] != x[row]).any(-1)
        lowest = set(confidence[row].argsort()[:8].tolist())
        assert set(changed.nonzero().flatten().tolist()) == lowest
        assert torch.equal(out[row, changed], noise[row, changed])


def test_noise_is_per_image_and_distinct_per_candidate():
    source = NoiseSource(seeds=[3, 4, 3], candidates=2, tokens=5, width=3)
    draw = source.draw()
    assert draw.shape == (6, 5, 3)  # image-major rows: b * 2 + j
    assert torch.equal(draw[0:2], draw[4:6])  # the same seed (the same image) draws the same noise
    assert not torch.equal(draw[0], draw[2]) and not torch.equal(draw[0], draw[1])
    alone = NoiseSource(seeds=[4], candidates=2, tokens=5, width=3).draw()
    assert torch.equal(alone, draw[2:4])  # independent of batch mates and of the place in the batch
    assert not torch.equal(source.draw(), draw)  # each call is a fresh draw


def test_injection_overwrites_once_with_the_same_noise():
    diffusion = Diffusion()
    seen = []

    def denoise(x, self_cond, t):
        seen.append((int(t[0]), self_cond.clone()))
        return 0.5 * x

    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[1, 2] = True
    values = torch.full((2, 6, 4), 7.0)
    plain = diffusion.sample(lambda x, sc, t: 0.5 * x, NoiseSource([1, 2], 1, 6, 4), 5)
    trace = diffusion.sample(denoise, NoiseSource([1, 2], 1, 6, 4), 5, inject=Injection(500, mask, values))
    assert trace.injected_at == 399  # the first level at or below t = 500 (levels 999, 799, 599, 399, 199)
    self_cond_at_399 = seen[3][1]
    assert (self_cond_at_399[1, 2] == 7).all() and not (self_cond_at_399[0] == 7).any()
    assert torch.equal(trace.x0[0], plain.x0[0])  # rows without an injection: the same draws, same output
    assert not torch.equal(trace.x0[1, 2], plain.x0[1, 2])
    assert torch.equal(trace.x0[1, :2], plain.x0[1, :2])  # this denoiser mixes no positions


def test_guidance_formula():
    cond, uncond = torch.tensor([2.0]), torch.tensor([1.0])
    assert guide(cond, uncond, 1.0).item() == 3.0  # (1 + w) c - w u
    assert guide(cond, uncond, 0.0).item() == 2.0


def test_mbr_picks_the_consensus_candidate():
    candidates = ["a red circle on the left", "a red circle at the left", "two blue squares", "a red circle"]
    assert mbr_index(candidates) in (0, 1)
    assert mbr_index(["only one"]) == 0
    assert sentence_bleu("a b c d", "a b c d") == pytest.approx(1.0)
    picked = mbr_select(["x y", "x y", "z", "p q", "r", "p q"], 3)
    assert picked == ["x y", "p q"]
    with pytest.raises(ValueError):
        mbr_select(["a", "b"], 3)


@pytest.mark.parametrize("refine", [None, Refine(k=2)])
def test_a_run_resumed_from_its_pause_draws_what_the_whole_run_draws(refine):
    diffusion = Diffusion()
    confidence = lambda x0: x0.mean(-1)  # noqa: E731
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, 1] = True
    inject = Injection(200, mask, torch.full((2, 6, 4), 3.0))
    for steps in (5, 10):
        whole = diffusion.sample(CountingDenoiser(), NoiseSource([5, 6], 1, 6, 4), steps, 1.0, refine, confidence,
                                 inject=inject)
        plain = diffusion.sample(CountingDenoiser(), NoiseSource([5, 6], 1, 6, 4), steps, 1.0, refine, confidence,
                                 pause_at=200)
        assert plain.paused is not None and plain.paused.calls < plain.calls
        resumed = diffusion.sample(CountingDenoiser(), NoiseSource([5, 6], 1, 6, 4), steps, 1.0, refine, confidence,
                                   inject=inject, resume=plain.paused)
        assert torch.equal(resumed.x0, whole.x0) and resumed.calls == whole.calls
        again = diffusion.sample(CountingDenoiser(), NoiseSource([5, 6], 1, 6, 4), steps, 1.0, refine, confidence,
                                 resume=plain.paused)
        assert torch.equal(again.x0, plain.x0)


def test_temperature_scales_every_draw_and_one_changes_nothing():
    plain = NoiseSource(seeds=[3, 4], candidates=1, tokens=5, width=3)
    hot = NoiseSource(seeds=[3, 4], candidates=1, tokens=5, width=3, scale=2.0)
    for _ in range(2):  # the start and a re-noising draw alike
        a, b = plain.draw(), hot.draw()
        assert torch.equal(b, 2.0 * a)
    assert NoiseSource(seeds=[3], candidates=1, tokens=5, width=3, scale=1.0).scale == 1.0
