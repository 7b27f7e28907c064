"""The masked diffusion captioner: forward process, loss, schedule, sampler, seeds, probes, recall."""

import math

import pytest
import torch

from bench.metrics.errprop import words as split_words
from models.masked_diffusion import process
from models.masked_diffusion.captioner import MaskedDiffusionCaptioner
from models.masked_diffusion.sampler import Injection, sample

# -- forward process and loss ----------------------------------------------------------------------


def test_masking_probability_is_t_per_token():
    ids = torch.arange(4).repeat(2000, 1)  # 8000 tokens per level
    generator = torch.Generator().manual_seed(0)
    for level in (0.1, 0.5, 0.9):
        noisy, masked = process.add_noise(ids, torch.full((2000,), level), mask_id=99, generator=generator)
        assert abs(masked.float().mean().item() - level) < 0.02
        assert bool((noisy[masked] == 99).all()) and bool((noisy[~masked] == ids[~masked]).all())
    # t = 1 masks everything (draws are < 1); a row's t applies to that row only
    _, masked = process.add_noise(ids[:2], torch.tensor([1.0, 0.0]), mask_id=99)
    assert masked[0].all() and not masked[1].any()


def test_noise_levels_cover_eps_to_one():
    t = process.sample_t(4, eps=1e-3, low_discrepancy=True, generator=torch.Generator().manual_seed(1))
    assert bool(((t >= 1e-3) & (t < 1)).all())
    gaps = torch.diff(torch.sort(t).values)
    assert torch.allclose(gaps, torch.full((3,), 0.25 * (1 - 1e-3)), atol=1e-6)  # stratified: 1/4 apart
    t = process.sample_t(1000, eps=0.2, low_discrepancy=False, generator=torch.Generator().manual_seed(1))
    assert t.min() >= 0.2 and t.max() < 1 and abs(t.mean().item() - 0.6) < 0.03


def test_loss_is_masked_cross_entropy_weighted_by_one_over_t():
    logits = torch.zeros(2, 3, 2)  # uniform over 2 tokens: CE = ln 2 at every position
    targets = torch.tensor([[0, 1, 0], [1, 1, 0]])
    masked = torch.tensor([[True, False, True], [False, False, True]])
    t = torch.tensor([0.5, 0.25])
    # (2 / 0.5 + 1 / 0.25) ln 2, over batch x L = 6
    assert process.masked_loss(logits, targets, masked, t).item() == pytest.approx(8 * math.log(2) / 6)
    logits[0, 1, 0] = 50.0  # an unmasked position's prediction carries no loss
    assert process.masked_loss(logits, targets, masked, t).item() == pytest.approx(8 * math.log(2) / 6)


def test_transfer_schedule_splits_evenly_with_the_remainder_first():
    assert process.transfer_counts(24, 8) == [3] * 8
    assert process.transfer_counts(24, 5) == [5, 5, 5, 5, 4]
    assert process.transfer_counts(7, 3) == [3, 2, 2]
    assert process.block_bounds(24, 5) == [(0, 5), (5, 10), (10, 15), (15, 20), (20, 24)]
    assert process.block_steps(1, process.block_bounds(24, 3)) == [1, 1, 1]  # one per block at least
    assert process.block_steps(30, process.block_bounds(24, 1)) == [24]  # never more steps than tokens
    with pytest.raises(ValueError):
        process.block_bounds(24, 25)


# -- sampler on a stand-in network ---------------------------------------------------------------


def _random_network(vocab: int = 7, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)

    def denoise(x: torch.Tensor) -> torch.Tensor:
        return torch.randn(*x.shape, vocab, generator=generator) * 3

    return denoise


@pytest.mark.parametrize("steps,blocks", [(1, 1), (5, 1), (8, 1), (24, 1), (6, 3), (4, 2)])
def test_sampler_commits_the_scheduled_number_per_step_and_leaves_no_mask(steps, blocks):
    trace = sample(_random_network(), batch=3, length=24, mask_id=7, steps=steps, blocks=blocks)
    assert not bool((trace.tokens == 7).any()) and bool((trace.committed_at >= 0).all())
    bounds = process.block_bounds(24, blocks)
    expected = [n for (a, b), s in zip(bounds, process.block_steps(steps, bounds), strict=True)
                for n in process.transfer_counts(b - a, s)]
    assert trace.total_steps == len(expected) and trace.steps == [len(expected)] * 3
    for row in trace.committed_at:
        assert torch.bincount(row, minlength=len(expected)).tolist() == expected
    if blocks > 1:  # a block is finished before the next one starts
        (a, b), (c, _) = bounds[0], bounds[1]
        assert trace.committed_at[:, a:b].max() < trace.committed_at[:, c:].min()


def test_sampler_commits_the_most_confident_positions():
    def denoise(x: torch.Tensor) -> torch.Tensor:  # position j predicts token 1 with rising confidence
        logits = torch.zeros(*x.shape, 2)
        logits[..., 1] = torch.arange(x.shape[1], dtype=torch.float32)
        return logits

    trace = sample(denoise, batch=1, length=6, mask_id=2, steps=3)
    assert trace.committed_at.tolist() == [[2, 2, 1, 1, 0, 0]]


def test_threshold_rule_commits_confident_positions_at_least_one_per_step():
    def denoise(x: torch.Tensor) -> torch.Tensor:  # confident at even positions only
        logits = torch.zeros(*x.shape, 3)
        logits[:, ::2, 0] = 10.0
        logits[:, 1::2, 1] = torch.linspace(0.1, 0.5, x.shape[1] // 2)
        return logits

    trace = sample(denoise, batch=2, length=8, mask_id=3, steps=1, threshold=0.9)
    assert not bool((trace.tokens == 3).any())
    # step 0: the 4 confident positions (and no other); then one odd position per step
    assert trace.total_steps == 5 and trace.steps == [5, 5]
    assert torch.bincount(trace.committed_at[0]).tolist() == [4, 1, 1, 1, 1]


def test_injection_commits_the_given_tokens_and_they_are_never_remasked():
    positions = torch.zeros(2, 8, dtype=torch.bool)
    positions[:, 3] = True
    tokens = torch.full((2, 8), 5)
    trace = sample(_random_network(vocab=5), batch=2, length=8, mask_id=6, steps=4,
                   injection=Injection([3, 1], positions, tokens))
    assert trace.tokens[:, 3].tolist() == [5, 5]  # 5 is outside the network's vocabulary: only injected
    assert trace.committed_at[:, 3].tolist() == [3, 1]
    assert not bool((trace.tokens == 6).any())


def _row_network(vocab: int = 9, length: int = 12, seed: int = 0):
    """Logits that depend on the row's own tokens only (a stand-in network without batch coupling),
    with confidences spread widely enough that rows need different numbers of threshold steps."""
    generator = torch.Generator().manual_seed(seed)
    table = torch.randn(vocab + 2, length, vocab, generator=generator) * 2  # ids, one injected, [MASK]
    positions = torch.randn(length, vocab, generator=generator) * 2

    def denoise(x: torch.Tensor) -> torch.Tensor:
        neighbours = table[x.roll(1, dims=1), torch.arange(x.shape[1])]  # (batch, L, vocab)
        return positions + neighbours + table[x].mean(1)

    return denoise


def _generators(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


SETTINGS = [dict(blocks=2, threshold=0.3, temperature=1.5), dict(blocks=3, threshold=0.0, temperature=1.0),
            dict(blocks=2, remasking="random", temperature=0.0), dict(blocks=2, remasking="random", temperature=1.0)]


@pytest.mark.parametrize("settings", SETTINGS, ids=[str(s) for s in SETTINGS])
def test_a_row_decodes_the_same_with_any_batch_mates(settings):
    seeds = [11, 12, 13, 14, 15]
    positions = torch.zeros(5, 12, dtype=torch.bool)
    positions[:, 7] = True
    injection = Injection([0, 2, 4, 6, 30], positions, torch.full((5, 12), 9))  # 9: outside the network's vocab
    for inject in (None, injection):
        batch = sample(_row_network(), batch=5, length=12, mask_id=10, steps=6, generators=_generators(seeds),
                       injection=inject, **settings)
        for i, seed in enumerate(seeds):
            alone = sample(_row_network(), batch=1, length=12, mask_id=10, steps=6, generators=_generators([seed]),
                           injection=None if inject is None else Injection([inject.step[i]], positions[i: i + 1],
                                                                           inject.tokens[i: i + 1]), **settings)
            assert torch.equal(alone.tokens[0], batch.tokens[i]), (inject is not None, i)
            assert torch.equal(alone.committed_at[0], batch.committed_at[i])
            assert alone.steps == [batch.steps[i]] and torch.equal(alone.block_starts[0], batch.block_starts[i])
        if inject is not None:  # the injected token is committed at the row's own step (or after its last)
            assert batch.tokens[:, 7].tolist() == [9] * 5
            assert batch.committed_at[:, 7].tolist() == [min(s, n) for s, n in zip(inject.step, batch.steps, strict=True)]
    if settings.get("threshold"):  # the rows did need different numbers of steps: the case that matters
        assert len(set(batch.steps)) > 1


def test_random_remasking_commits_the_schedule_in_a_random_order():
    def denoise(x: torch.Tensor) -> torch.Tensor:  # position j predicts token 1 with rising confidence
        logits = torch.zeros(*x.shape, 2)
        logits[..., 1] = torch.arange(x.shape[1], dtype=torch.float32) + 1
        return logits

    confident = sample(denoise, batch=1, length=6, mask_id=2, steps=3)
    assert confident.committed_at.tolist() == [[2, 2, 1, 1, 0, 0]]  # the most confident first
    orders = set()
    for seed in range(8):
        trace = sample(denoise, batch=1, length=6, mask_id=2, steps=3, remasking="random",
                       generators=_generators([seed]))
        assert torch.bincount(trace.committed_at[0]).tolist() == [2, 2, 2] and trace.tokens.tolist() == [[1] * 6]
        orders.add(tuple(trace.committed_at[0].tolist()))
    assert len(orders) > 3  # the order does not follow the confidence
    with pytest.raises(ValueError, match="threshold"):
        sample(denoise, batch=1, length=6, mask_id=2, steps=3, remasking="random", threshold=0.5,
               generators=_generators([0]))
    with pytest.raises(ValueError, match="generator"):
        sample(denoise, batch=1, length=6, mask_id=2, steps=3, remasking="random")


def test_temperature_one_draws_tokens_from_the_model_distribution():
    logits = torch.log(torch.tensor([0.7, 0.2, 0.1]))

    def denoise(x: torch.Tensor) -> torch.Tensor:
        return logits.expand(*x.shape, 3)

    trace = sample(denoise, batch=3000, length=1, mask_id=3, steps=1, temperature=1.0, remasking="random",
                   generators=_generators(range(3000)))
    frequencies = torch.bincount(trace.tokens[:, 0], minlength=3).float() / 3000
    assert torch.allclose(frequencies, torch.tensor([0.7, 0.2, 0.1]), atol=0.03)


def test_injection_steps_are_the_commit_step_or_fractions_of_the_slot_block():
    from models.masked_diffusion.captioner import _injection_step
    from models.masked_diffusion.sampler import Trace

    # two blocks of 4: this row took 3 steps in the first and 4 in the second
    trace = Trace(torch.zeros(1, 8, dtype=torch.long), torch.tensor([[0, 2, 1, 0, 3, 6, 5, 4]]), [7], 7,
                  [(0, 4), (4, 8)], torch.tensor([[0, 3, 7]]))
    slot = torch.zeros(8, dtype=torch.bool)
    slot[[5, 6]] = True  # a word of two pieces in the second block
    assert _injection_step(trace, 0, slot, None) == 6  # the step that committed its first piece
    assert [_injection_step(trace, 0, slot, f) for f in (0.0, 0.2, 0.5, 0.8, 1.0)] == [3, 4, 5, 6, 7]
    slot = torch.zeros(8, dtype=torch.bool)
    slot[1] = True  # in the first block: the levels stay inside it
    assert _injection_step(trace, 0, slot, None) == 2
    assert [_injection_step(trace, 0, slot, f) for f in (0.2, 0.5, 0.8)] == [1, 2, 2]


# -- the captioner ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def untrained(tiny_shapes):
    torch.manual_seed(0)
    model = MaskedDiffusionCaptioner(MaskedDiffusionCaptioner.variant_config("mdm-tiny"))
    model.prepare(tiny_shapes.samples("train"))
    pixels = torch.stack([model.preprocess(s.load_image()) for s in tiny_shapes.samples("test")[:4]])
    return model, pixels


CAPTIONER_SETTINGS = [{"temperature": 5.0, "steps": 6},
                      {"temperature": 2.0, "steps": 8, "blocks": 2, "threshold": 0.02},
                      {"temperature": 1.0, "steps": 6, "blocks": 2, "remasking": "random"}]


@pytest.mark.parametrize("noisy", CAPTIONER_SETTINGS, ids=[str(s) for s in CAPTIONER_SETTINGS])
def test_deterministic_for_a_seed_and_independent_of_batch_mates(untrained, noisy):
    model, pixels = untrained
    batch = model.caption_raw(pixels, seed=3, **noisy)
    assert model.caption_raw(pixels, seed=3, **noisy) == batch
    alone = [model.caption_raw(pixels[i: i + 1], seed=3, **noisy)[0] for i in range(len(pixels))]
    assert alone == batch
    assert model.caption_raw(pixels.flip(0), seed=3, **noisy) == batch[::-1]
    assert model.caption_raw(pixels, seed=4, **noisy) != batch  # the seed does change the noise


def test_an_injected_caption_does_not_depend_on_its_batch_mates(untrained):
    model, pixels = untrained
    decoding = {"temperature": 2.0, "steps": 8, "blocks": 2, "threshold": 0.02, "seed": 1}
    captions = model.caption(pixels, **decoding)
    words = ["zebra"] * len(pixels)
    for level in model.injection_levels:
        batch = model.caption_with_injection(pixels, captions, 0, words, level=level, **decoding)
        alone = [model.caption_with_injection(pixels[i: i + 1], captions[i: i + 1], 0, words[:1], level=level,
                                              **decoding)[0] for i in range(len(pixels))]
        assert alone == batch, level


def test_generate_reports_actual_network_evaluations(untrained):
    model, pixels = untrained
    assert model.generate(pixels, steps=6).network_evals == [6] * 4
    assert model.generate(pixels, steps=6, guidance=1.0).network_evals == [12] * 4
    assert model.decode_cost(steps=6, guidance=1.0) == 12 and model.decode_cost(steps=99) == 24
    assert model.decode_cost(steps=1, blocks=3) == 3
    evals = model.generate(pixels, threshold=0.5).network_evals
    assert all(1 <= n <= 24 for n in evals)
    with pytest.raises(ValueError, match="blocks"):
        model.caption(pixels, blocks=0)


def test_guidance_is_refused_for_a_model_trained_without_an_unconditional_branch(tiny_shapes, untrained):
    _, pixels = untrained
    plain = MaskedDiffusionCaptioner(MaskedDiffusionCaptioner.variant_config("mdm-tiny", cfg_drop_prob=0.0))
    plain.prepare(tiny_shapes.samples("train"))
    assert len(plain.caption(pixels, guidance=0.0)) == 4
    with pytest.raises(ValueError, match="trained without one"):
        plain.caption(pixels, guidance=1.0)
    with pytest.raises(ValueError, match="trained without one"):
        plain.decode_cost(guidance=0.5)


@pytest.fixture(scope="module")
def recalled(tiny_shapes):
    """mdm-tiny (a little wider) trained to recall one caption per image for 4 images."""
    torch.manual_seed(0)
    config = MaskedDiffusionCaptioner.variant_config("mdm-tiny", width=64, heads=4, ffn=128, cfg_drop_prob=0.0)
    model = MaskedDiffusionCaptioner(config)
    samples = tiny_shapes.samples("train")[:4]
    model.prepare(samples)
    pixels = torch.stack([model.preprocess(s.load_image()) for s in samples])
    captions = [s.references[0] for s in samples]
    batch = model.collate(list(pixels), captions)
    optimizer = torch.optim.AdamW(model.module.parameters(), lr=3e-3)
    model.module.train()
    for _ in range(300):
        optimizer.zero_grad()
        model.training_loss({**batch, "pixel_values": batch["pixel_values"].repeat(4, 1, 1, 1),
                             "tokens": batch["tokens"].repeat(4, 1)}).backward()
        optimizer.step()
    return model, pixels, [" ".join(split_words(c)) for c in captions]


def test_a_tiny_model_recalls_a_handful_of_captions_exactly(recalled):
    model, pixels, captions = recalled
    for steps in (4, 24):
        assert [" ".join(split_words(c)) for c in model.caption(pixels, steps=steps)] == captions


def test_injection_at_the_last_step_keeps_the_wrong_word(recalled):
    model, pixels, captions = recalled
    position = 2
    wrong = ["circle" if split_words(c)[position] != "circle" else "square" for c in captions]
    steps = 8
    late = model.caption_with_injection(pixels, captions, position, wrong, level=(steps - 1) / steps, steps=steps)
    for caption, injected, word in zip(captions, late, wrong, strict=True):
        out = split_words(injected)
        assert out[position] == word
        assert out[:position] == split_words(caption)[:position]  # committed words never move
    control = model.caption_with_injection(pixels, captions, position, [split_words(c)[position] for c in captions],
                                           level=1.0, steps=steps)
    assert [" ".join(split_words(c)) for c in control] == captions


def test_sampling_probe_gives_k_captions_per_image(untrained):
    model, pixels = untrained
    samples = model.sample_captions(pixels[:2], 3, "seeds", seed=0, steps=4)
    assert len(samples) == 2 and all(len(s) == 3 for s in samples)
    assert samples[0] == model.sample_captions(pixels[:1], 3, "seeds", seed=0, steps=4)[0]
    with pytest.raises(ValueError, match="seeds"):
        model.sample_captions(pixels, 2, "nucleus")
    # the temperature is honoured: without noise low-confidence remasking gives one caption k times,
    # random remasking (the ancestral sampler) still varies with the seed
    assert all(len(set(row)) == 1 for row in model.sample_captions(pixels, 3, "seeds", temperature=0.0, steps=4))
    ancestral = model.sample_captions(pixels, 3, "ancestral", seed=2, temperature=1.0, steps=4)
    assert ancestral == model.sample_captions(pixels, 3, "ancestral", seed=2, temperature=1.0, steps=4)
    assert ancestral != model.sample_captions(pixels, 3, "ancestral", seed=2, temperature=0.5, steps=4)
    assert any(len(set(row)) > 1 for row in model.sample_captions(pixels, 3, "ancestral", temperature=0.0, steps=4))
    assert model.sampling_settings("ancestral", 3)["remasking"] == "random"


# -- saving: a frozen pretrained image encoder is referred to, not copied ----------------------------


def test_saved_model_refers_to_its_frozen_pretrained_image_encoder(tmp_path, tiny_shapes):
    import json

    from tests.stand_ins import as_if_trained, blip_checkpoint, revise_checkpoint

    torch.manual_seed(0)
    blip_checkpoint(tmp_path / "blip")
    config = MaskedDiffusionCaptioner.variant_config(
        "mdm-tiny", image_encoder="blip", image_source=str(tmp_path / "blip"), image_size=32, image_width=32,
        image_patch=8, image_layers=1, image_heads=2, image_norm="clip")
    model = MaskedDiffusionCaptioner(config)
    model.prepare(tiny_shapes.samples("train")[:8])
    as_if_trained(model.module)
    model.save(tmp_path / "saved")

    saved = torch.load(tmp_path / "saved" / "weights.pt", weights_only=True)
    assert saved and not [k for k in saved if k.startswith("image_encoder.")]
    assert {k for k, p in model.module.named_parameters() if p.requires_grad} <= set(saved)
    meta = json.loads((tmp_path / "saved" / "frozen.json").read_text())
    assert meta["prefixes"] == ["image_encoder."] and set(meta["sources"]) == {"image_encoder"}

    loaded = MaskedDiffusionCaptioner.load(tmp_path / "saved")
    expected = model.module.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in loaded.module.state_dict().items())
    pixels = torch.stack([model.preprocess(s.load_image()) for s in tiny_shapes.samples("test")[:3]])
    assert loaded.caption(pixels) == model.caption(pixels)

    revise_checkpoint(tmp_path / "blip")
    with pytest.raises(ValueError, match="image_encoder weights .* identity"):
        MaskedDiffusionCaptioner.load(tmp_path / "saved")


def test_a_model_without_pretrained_parts_saves_every_weight(tmp_path, tiny_shapes):
    model = MaskedDiffusionCaptioner(MaskedDiffusionCaptioner.variant_config("mdm-tiny"))
    model.prepare(tiny_shapes.samples("train")[:8])
    model.save(tmp_path / "saved")
    saved = torch.load(tmp_path / "saved" / "weights.pt", weights_only=True)
    assert set(saved) == set(model.module.state_dict())
    loaded = MaskedDiffusionCaptioner.load(tmp_path / "saved")
    assert all(torch.equal(v, saved[k]) for k, v in loaded.module.state_dict().items())


def test_injection_reuses_the_uninjected_decoding_only_for_the_same_images_and_weights(untrained):
    model, pixels = untrained
    captions = model.caption(pixels, steps=4)
    words = ["zebra"] * len(pixels)
    first = model.caption_with_injection(pixels, captions, 0, words, level=0.5, steps=4)
    remembered = model._base
    again = model.caption_with_injection(pixels, captions, 0, words, level=0.5, steps=4)
    assert again == first and model._base is remembered  # same images and settings: not decoded again
    model.caption_with_injection(pixels[:2], captions[:2], 0, words[:2], level=0.5, steps=4)
    assert model._base is not remembered  # other images: decoded afresh
    model.training_loss(model.collate(list(pixels), captions))
    assert model._base is None  # training forgets it


# -- layering and shared parts -----------------------------------------------------------------------


def test_the_package_imports_nothing_from_the_harness_metrics():
    import ast
    from pathlib import Path

    import models.masked_diffusion as package

    for path in Path(package.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not [n for n in names if n.startswith("bench.metrics")], path.name


@pytest.mark.parametrize("name", ["mdm-tiny", "ladic-tiny"])
def test_decoding_runs_in_eval_mode_and_puts_the_callers_mode_back(tiny_shapes, name):
    from bench.registry import create_captioner

    model = create_captioner(name, dropout=0.1)
    model.prepare(tiny_shapes.samples("train")[:8])
    pixels = torch.stack([model.preprocess(s.load_image()) for s in tiny_shapes.samples("test")[:2]])
    seen: list[bool] = []
    for m in model.module.modules():
        m.register_forward_pre_hook(lambda module, args: seen.append(module.training))
    for training in (True, False):
        model.module.train(training)
        before = [m.training for m in model.module.modules()]
        seen.clear()
        model.caption(pixels, steps=2)
        assert seen and not any(seen)  # every module ran in eval mode (dropout off)
        assert [m.training for m in model.module.modules()] == before


def test_the_image_preprocessing_is_ladics(tiny_shapes):
    from models.ladic.captioner import LaDiCCaptioner

    image = tiny_shapes.samples("test")[0].load_image()
    ladic = LaDiCCaptioner(LaDiCCaptioner.variant_config("ladic-mini"))
    mdm = MaskedDiffusionCaptioner(MaskedDiffusionCaptioner.variant_config("mdm-mini"))
    assert torch.equal(ladic.preprocess(image), mdm.preprocess(image))
    assert mdm.preprocess(image).shape == (3, 64, 64)
