"""The masked diffusion captioner's inference stacks (bf16, compiled) and Fast-dLLM's block cache."""

from __future__ import annotations

import pytest
import torch

from models.masked_diffusion import sampler as sampler_module
from models.masked_diffusion import stack as stack_module
from models.masked_diffusion.block_cache import BlockCache, prefixed_forward
from models.masked_diffusion.captioner import MaskedDiffusionCaptioner
from models.masked_diffusion.sampler import sample

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: small models run faster on one


@pytest.fixture()
def tiny(tiny_shapes):
    torch.manual_seed(0)
    model = MaskedDiffusionCaptioner(MaskedDiffusionCaptioner.variant_config("mdm-tiny"))
    model.prepare(tiny_shapes.samples("train"))
    model.module.eval()
    return model


@pytest.fixture(scope="module")
def pixels(tiny_shapes):
    model = MaskedDiffusionCaptioner(MaskedDiffusionCaptioner.variant_config("mdm-tiny"))
    return torch.stack([model.preprocess(s.load_image()) for s in tiny_shapes.samples("test")[:3]])


NOISY = {"temperature": 2.0, "steps": 6, "blocks": 2, "seed": 4}


def _qkv_lengths(model: MaskedDiffusionCaptioner) -> tuple[list[int], list]:
    """Sequence lengths fed to the first layer's self-attention projection, call by call."""
    lengths: list[int] = []
    handle = model.module.denoiser.layers[0].qkv.register_forward_hook(
        lambda _m, args, _out: lengths.append(args[0].shape[1]))
    return lengths, handle


# -- inference stacks ------------------------------------------------------------------------------


def test_graph_is_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"stack 'graph' is not supported by MaskedDiffusionCaptioner "
                                         r"\(CUDA-graph.*supported: eager, compiled"):
        MaskedDiffusionCaptioner.check_stack("fp32", "graph")
    assert MaskedDiffusionCaptioner.check_stack("bf16", "compiled") == ("bf16", "compiled")


def test_bf16_converts_weights_keeps_sampler_fp32_and_restores_exact_weights(tiny, pixels, monkeypatch):
    before = {k: v.clone() for k, v in tiny.module.state_dict().items()}
    fp32 = tiny.caption(pixels, **NOISY)
    tiny.set_stack("bf16", "eager")
    assert {p.dtype for p in tiny.module.parameters()} == {torch.bfloat16}
    seen: list[tuple[torch.dtype, ...]] = []
    original = sampler_module.predict

    def spy(logits, temperature, noise):
        choice, confidence = original(logits, temperature, noise)
        seen.append((logits.dtype, noise.dtype, confidence.dtype))
        return choice, confidence

    monkeypatch.setattr(sampler_module, "predict", spy)
    for cache in (False, True):
        assert len(tiny.caption(pixels, **NOISY, block_cache=cache)) == len(pixels)
    assert seen and set(seen) == {(torch.float32, torch.float64, torch.float32)}  # logits, Gumbel, confidences
    record = tiny.stack_record()
    assert record["dtype"] == "bf16" and "graph" in record["unsupported"]
    tiny.set_stack("fp32", "eager")
    after = tiny.module.state_dict()
    assert all(torch.equal(before[k], after[k]) and before[k].dtype == after[k].dtype for k in before)
    assert tiny.caption(pixels, **NOISY) == fp32


def test_a_stack_switch_forgets_the_remembered_uninjected_decoding(tiny, pixels):
    captions = tiny.caption(pixels, steps=4)
    tiny.caption_with_injection(pixels, captions, 0, ["zebra"] * len(pixels), steps=4)
    assert tiny._base is not None
    tiny.set_stack("bf16", "eager")
    assert tiny._base is None
    tiny.set_stack("fp32", "eager")


@pytest.mark.slow
def test_compiled_and_eager_give_identical_captions_in_fp32(tiny, pixels):
    settings = [{"steps": 4}, {**NOISY, "guidance": 1.0, "block_cache": True}]
    eager = [tiny.generate(pixels[:1], **s) for s in settings]
    tiny.set_stack("fp32", "compiled")
    try:
        compiled = [tiny.generate(pixels[:1], **s) for s in settings]
    finally:
        tiny.set_stack("fp32", "eager")
    assert [g.captions for g in compiled] == [g.captions for g in eager]
    assert [g.network_evals for g in compiled] == [g.network_evals for g in eager]


# -- block cache -----------------------------------------------------------------------------------


def test_default_decoding_is_the_plain_sampler_over_the_network(tiny, pixels):
    """What decoding was before the stacks and the cache: the sampler over denoiser(x, image K/V)."""
    network = tiny.module
    kv = network.denoiser.memory_kv(network.encode_images(pixels))
    for d in ({"steps": 6}, {"steps": 6, "blocks": 2}):
        with torch.no_grad():
            reference = sample(lambda x: network.denoiser(x, kv), len(pixels), 24, tiny.vocab.mask, **d)
        assert torch.equal(tiny._trace(pixels, tiny._settings(**d)).tokens, reference.tokens)
        assert torch.equal(tiny._trace(pixels, tiny._settings(**d, block_cache=False)).tokens, reference.tokens)


def test_prefixed_forward_is_the_denoisers_forward(tiny, pixels):
    denoiser, network = tiny.module.denoiser, tiny.module
    x = torch.randint(0, tiny.vocab.size + 1, (len(pixels), 24))
    with torch.no_grad():
        kv = denoiser.memory_kv(network.encode_images(pixels))
        full, own = prefixed_forward(denoiser, x, 0, kv, None)
        assert torch.equal(full, denoiser(x, kv))  # no prefix: the same operations in the same order
        # the suffix over the prefix's keys/values from that same pass: the same logits
        suffix, _ = prefixed_forward(denoiser, x[:, 10:], 10, kv, [(k[:, :, :10], v[:, :, :10]) for k, v in own])
    torch.testing.assert_close(suffix, full[:, 10:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("settings", [{"steps": 6}, {**NOISY, "blocks": 1}, {"threshold": 0.05},
                                      {"steps": 4, "guidance": 1.0}])
def test_with_one_block_the_cache_changes_nothing(tiny, pixels, settings):
    plain = tiny.generate(pixels, **settings)
    cached = tiny.generate(pixels, **settings, block_cache=True)
    assert cached.captions == plain.captions and cached.network_evals == plain.network_evals


@pytest.mark.parametrize("settings", [{"steps": 6, "blocks": 2}, NOISY, {**NOISY, "guidance": 1.5},
                                      {"blocks": 2, "threshold": 0.05}])
def test_with_two_blocks_the_first_block_is_exact_and_the_cost_is_counted_the_same(tiny, pixels, settings):
    plain = tiny._trace(pixels, tiny._settings(**settings))
    cached = tiny._trace(pixels, tiny._settings(**settings, block_cache=True))
    assert torch.equal(cached.tokens[:, :12], plain.tokens[:, :12])
    assert torch.equal(cached.committed_at[:, :12], plain.committed_at[:, :12])
    assert cached.steps == plain.steps and not bool((cached.tokens == tiny.vocab.mask).any())
    assert tiny.decode_cost(**settings, block_cache=True) == tiny.decode_cost(**settings)


def test_the_logits_are_exact_until_a_stored_prefix_is_read(tiny, pixels, monkeypatch):
    """Steps of the first block and the second block's first step see exactly the uncached logits
    (nothing stored is read yet); the second block's later steps read the stored block and differ."""
    seen: dict[bool, list[torch.Tensor]] = {False: [], True: []}
    original = sampler_module.predict
    for cache in (False, True):
        def spy(logits, temperature, noise, cache=cache):
            seen[cache].append(logits[:, 12:].clone())  # the second block's positions and after
            return original(logits, temperature, noise)

        monkeypatch.setattr(sampler_module, "predict", spy)
        tiny.caption(pixels, steps=6, blocks=2, block_cache=cache)
    exact = [torch.equal(a, b) for a, b in zip(seen[False], seen[True], strict=True)]
    assert exact == [True, True, True, True, False, False]


@pytest.mark.parametrize("blocks,steps,expected", [(1, 4, [24] * 4), (2, 4, [24, 24, 24, 12]),
                                                   (3, 6, [24, 24, 24, 16, 16, 8])])
def test_the_cache_computes_a_committed_blocks_keys_and_values_once(tiny, pixels, monkeypatch, blocks, steps,
                                                                    expected):
    caches: list[BlockCache] = []

    class Counted(BlockCache):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            caches.append(self)

    monkeypatch.setattr(stack_module, "BlockCache", Counted)
    lengths, handle = _qkv_lengths(tiny)
    try:
        tiny.caption(pixels, steps=steps, blocks=blocks, block_cache=False)
        assert lengths == [24] * steps  # without the cache every step runs over all L positions
        lengths.clear()
        tiny.caption(pixels, steps=steps, blocks=blocks, block_cache=True)
    finally:
        handle.remove()
    # each block's first step runs from the start of the block just committed (storing its K/V),
    # its later steps from the current block's start: a committed position is run once after commit
    assert lengths == expected
    assert [c.stored for c in caches] == [24 - expected[-1]]


def test_a_rewritten_cached_token_is_recomputed_not_served_stale(tiny, pixels):
    network = tiny.module
    with torch.no_grad():
        kv = network.denoiser.memory_kv(network.encode_images(pixels))
        forward, prefixed = network.denoiser, stack_module.make_passes(network, "eager").prefixed
        x = torch.randint(0, tiny.vocab.size, (len(pixels), 24))
        cache = BlockCache(forward, prefixed, kv)
        assert torch.equal(cache(x), forward(x, kv))  # the first block: the plain forward
        cache.begin_block(12)
        cache(x)  # stores positions 0-11
        # the same tokens over the stored keys/values: the plain forward's logits from the block on
        torch.testing.assert_close(cache(x)[:, 12:], forward(x, kv)[:, 12:], atol=1e-5, rtol=1e-5)
        assert cache.stored == 12
        x[:, 3] = (x[:, 3] + 1) % tiny.vocab.size  # the error probe writing a committed position
        rewritten = cache(x)
        fresh = BlockCache(forward, prefixed, kv)
        fresh.begin_block(12)
        assert torch.equal(rewritten, fresh(x)) and cache.stored == 24
