"""LaDiC as a captioner, on ladic-tiny: latent space, decoding, costs, sampling modes, persistence."""

from __future__ import annotations

import pytest
import torch

from models.ladic.captioner import LaDiCCaptioner
from models.ladic.tokens import CaptionCodec, finish_caption, postprocess_ids
from tasks.shapes import ShapesTask

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: small models run faster on one


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    task = ShapesTask(seed=0, train=12, val=2, test=4, root=tmp_path_factory.mktemp("shapes"))
    return task.samples("train")


@pytest.fixture(scope="module")
def tiny(samples):
    torch.manual_seed(0)
    model = LaDiCCaptioner(LaDiCCaptioner.variant_config("ladic-tiny"))
    model.prepare(samples)
    model.module.eval()
    return model


@pytest.fixture(scope="module")
def pixels(tiny, samples):
    return torch.stack([tiny.preprocess(s.load_image()) for s in samples[:4]])


def test_statistics_come_from_the_training_captions(tiny, samples):
    latent = tiny.module.latent
    captions = [r for s in samples for r in s.references]
    ids, mask = tiny.codec.encode(captions, tiny.config.max_tokens)
    h = latent.hidden(ids, mask).double().flatten(0, 1)
    assert torch.allclose(latent.mean.double(), h.mean(0), atol=1e-5)
    assert torch.allclose(latent.std.double(), h.std(0, unbiased=False), atol=1e-4)
    x0 = latent.encode(ids, mask).flatten(0, 1)
    assert x0.mean(0).abs().max() < 1e-4 and (x0.std(0, unbiased=False) - 1).abs().max() < 1e-3


def test_length_regularisation(tiny):
    latent, codec = tiny.module.latent, tiny.codec
    ids, mask = codec.encode(["a red circle", "two shapes : a blue square and a green circle"], 24)
    x0 = latent.encode(ids, mask)
    filler = latent.normalise(latent.filler)
    special = torch.isin(ids, torch.tensor(codec.special_ids))
    assert special[0, 0] and special[0, 4:].all()  # [CLS] a red circle [SEP] [PAD]...
    assert torch.allclose(x0[special], filler.expand(int(special.sum()), -1))
    assert not torch.allclose(x0[0, 1], filler)
    targets = latent.targets(ids)
    dot = int((latent.vocab_ids == codec.dot_id).nonzero())
    assert (targets[special] == dot).all() and (targets[~special] != dot).all()


def test_decoding_deduplicates_per_caption():
    drop = {0, 1, 2, 3}
    assert postprocess_ids([1, 7, 7, 8, 3, 3, 9, 2, 0], drop) == [7, 8, 9]
    # The released code collapses a column when the *batch* repeats it: per caption, a caption
    # whose neighbour differs must come out the same as alone.
    rows = [[1, 5, 5, 6, 2, 0], [1, 5, 6, 6, 2, 0]]
    assert [postprocess_ids(r, drop) for r in rows] == [[5, 6], [5, 6]]
    assert finish_caption("a a red . . circle circle .") == "a red circle."
    assert finish_caption(". .") == ""


def test_codec_round_trip(tiny):
    ids, mask = tiny.codec.encode(["A red circle."], 8)
    assert ids.shape == (1, 8) and mask.tolist() == [[1, 1, 1, 1, 1, 0, 0, 0]]
    assert tiny.codec.decode(ids[0].tolist()) == "a red circle."
    words = CaptionCodec.fit_words(["a b c"])
    assert words.decode(words.encode(["a b a"], 6)[0][0].tolist()) == "a b a."


def test_training_loss_and_frozen_encoder(tiny, samples):
    images = [tiny.preprocess(s.load_image(), train=True) for s in samples[:3]]
    batch = tiny.collate(images, [s.references[0] for s in samples[:3]])
    tiny.module.train()
    try:
        loss = tiny.training_loss(batch)
        loss.backward()
    finally:
        tiny.module.eval()
    assert torch.isfinite(loss)
    latent = tiny.module.latent
    assert all(p.grad is None for p in latent.encoder.parameters())
    assert latent.head.decoder.weight.grad is not None
    assert any(p.grad is not None for p in tiny.module.diffuser.parameters())
    tiny.module.zero_grad(set_to_none=True)


class Counter:
    """Wraps the diffuser's forward and counts rows (= per-sample network evaluations)."""

    def __init__(self, diffuser):
        self.rows, self.diffuser, self.original = 0, diffuser, diffuser.forward

    def __enter__(self):
        def counted(x_t, *args, **kwargs):
            self.rows += x_t.shape[0]
            return self.original(x_t, *args, **kwargs)

        self.diffuser.forward = counted
        return self

    def __exit__(self, *exc):
        del self.diffuser.forward


@pytest.mark.parametrize("decoding,expected", [
    ({"steps": 5, "guidance": 1.0, "back_and_refine": False}, 10),
    ({"steps": 5, "guidance": 1.0, "back_and_refine": True}, 16),  # refine at t=599: 3 more steps
    ({"steps": 1, "guidance": 1.0, "back_and_refine": True}, 2),
    ({"steps": 4, "guidance": 0.0, "back_and_refine": False}, 4),
    ({"steps": 3, "guidance": 1.0, "back_and_refine": False, "mbr": 3}, 18),
])
@pytest.mark.parametrize("mode", ["optimized", "reference"])
def test_network_evaluations_match_decode_cost(tiny, pixels, decoding, expected, mode):
    assert tiny.decode_cost(**decoding) == expected
    with Counter(tiny.module.diffuser) as counter:
        captions = tiny.caption(pixels[:2], mode=mode, **decoding)
    assert len(captions) == 2
    assert counter.rows == expected * 2


def test_optimized_and_reference_sampling_agree(tiny, pixels):
    for decoding in ({}, {"steps": 7, "mbr": 2}, {"guidance": 0.0}):
        optimized = tiny.caption(pixels, seed=3, **decoding)
        assert tiny.caption(pixels, seed=3, mode="reference", **decoding) == optimized
    settings = tiny._settings(None, None, None, None)
    a = tiny.sample_latents(pixels, *settings, seed=1, mode="optimized")
    b = tiny.sample_latents(pixels, *settings, seed=1, mode="reference")
    assert torch.allclose(a, b, atol=1e-5)


def test_sampling_is_deterministic_and_independent_of_batch_mates(tiny, pixels):
    settings = tiny._settings(None, None, None, None)
    batch = tiny.sample_latents(pixels, *settings, seed=5)
    assert torch.equal(batch, tiny.sample_latents(pixels, *settings, seed=5))
    assert not torch.equal(batch, tiny.sample_latents(pixels, *settings, seed=6))
    for i in range(len(pixels)):
        alone = tiny.sample_latents(pixels[i: i + 1], *settings, seed=5)
        assert torch.allclose(alone[0], batch[i], atol=1e-5)
        assert tiny.caption(pixels[i: i + 1], seed=5) == tiny.caption(pixels, seed=5)[i: i + 1]


def test_save_load_round_trip(tiny, pixels, tmp_path):
    tiny.save(tmp_path / "model")
    loaded = LaDiCCaptioner.load(tmp_path / "model")
    for name in ("mean", "std", "filler", "vocab_ids"):
        assert torch.equal(getattr(loaded.module.latent, name), getattr(tiny.module.latent, name))
    for decoding in ({}, {"steps": 3, "back_and_refine": False, "mbr": 2}):
        assert loaded.caption(pixels, seed=2, **decoding) == tiny.caption(pixels, seed=2, **decoding)
    loaded.prepare([])  # already fitted: must keep its statistics, not refit or fail
    assert torch.equal(loaded.module.latent.mean, tiny.module.latent.mean)


def test_decoding_knobs_and_validation(tiny):
    assert tiny.default_decoding() == {"steps": 5, "guidance": 1.0, "back_and_refine": True, "mbr": 1}
    with pytest.raises(ValueError, match="mbr"):
        tiny.decode_cost(mbr=0)
    with pytest.raises(ValueError, match="decoder"):
        LaDiCCaptioner(LaDiCCaptioner.variant_config("ladic-tiny", decoder="upper"))
    with pytest.raises(ValueError, match="mode"):
        tiny.caption(torch.zeros(1, 3, 32, 32), mode="fast")


def test_latent_cache_gives_the_encoder_latents(tiny, samples):
    cached = LaDiCCaptioner(tiny.config.replace(latent_cache=5))
    cached.network, cached.codec, cached.arch = tiny.network, tiny.codec, tiny.arch
    captions = [s.references[0] for s in samples[:8]]
    ids, mask = tiny.codec.encode(captions, tiny.config.max_tokens)
    first = cached._latents.x0(cached.module.latent, ids, mask)
    assert len(cached._latents) == 5  # bounded
    assert torch.equal(cached._latents.x0(cached.module.latent, ids, mask), first)  # hits and misses round alike
    exact = tiny.module.latent.encode(ids, mask)
    assert torch.allclose(first, exact, atol=2e-2 * float(exact.abs().max()))


def test_cached_unconditional_memory_follows_the_weights(samples, pixels):
    torch.manual_seed(1)
    model = LaDiCCaptioner(LaDiCCaptioner.variant_config("ladic-tiny"))
    model.prepare(samples)
    settings = model._settings(None, None, None, None)
    before = model.sample_latents(pixels, *settings, seed=4)
    assert torch.equal(model.sample_latents(pixels, *settings, seed=4), before)  # served from the cache
    with torch.no_grad():  # what an optimizer step does: update weights in place
        model.module.diffuser.layers[0].cross_kv.weight.mul_(1.5)
        next(model.module.image_encoder.parameters()).add_(0.05)
    after = model.sample_latents(pixels, *settings, seed=4)
    assert torch.allclose(after, model.sample_latents(pixels, *settings, seed=4, mode="reference"), atol=1e-5)
    assert not torch.allclose(after, before)


def test_temperature_one_is_the_sampler_and_samples_follow_the_temperature(tiny, pixels):
    assert tiny.caption(pixels, seed=2, temperature=1.0) == tiny.caption(pixels, seed=2)
    x_cold = tiny.sample_latents(pixels, 3, 1.0, None, temperature=0.5)
    x_one = tiny.sample_latents(pixels, 3, 1.0, None)
    assert not torch.equal(x_cold, x_one)  # the draws moved, so the trajectory did
    k = 3
    assert tiny.sample_captions(pixels, k, "seeds", seed=2) == \
        tiny.sample_captions(pixels, k, "seeds", seed=2, temperature=1.0)
    hot = tiny.sample_captions(pixels, k, "seeds", seed=2, temperature=0.5)
    assert [row[0] for row in hot] == tiny.caption(pixels, seed=2, temperature=0.5)  # seed, seed+1, ...
    with pytest.raises(ValueError, match="temperature must be > 0"):
        tiny.caption(pixels, temperature=0.0)
