"""LaDiC's error-propagation probes and per-image noise, on ladic-tiny.

For the injection tests the diffuser is replaced by an analytic denoiser that stands in for a trained
one: it predicts x0 as alpha_bar_t * (x_t / sqrt(alpha_bar_t)) + (1 - alpha_bar_t) * prior, with the prior
the latent of a caption of each image (what a trained model knows from the image). Everything else
is LaDiC's own: latent space, sampler, noise, word-to-token mapping, decoding. The LM head is fitted
to the clean latents first, so a clean latent decodes to its caption.
"""

from __future__ import annotations

import pytest
import torch

from bench.metrics import errprop as ep
from bench.phases.errprop import Probes
from models.ladic.captioner import LaDiCCaptioner
from models.ladic.diffusion import NoiseSource
from models.seeding import image_seeds
from tasks.shapes import ShapesTask

DECODING = {"steps": 5, "back_and_refine": False}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: small models run faster on one


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    return ShapesTask(seed=0, train=12, val=2, test=4, root=tmp_path_factory.mktemp("shapes")).samples("train")


@pytest.fixture(scope="module")
def tiny(samples):
    torch.manual_seed(0)
    model = LaDiCCaptioner(LaDiCCaptioner.variant_config("ladic-tiny"))
    model.prepare(samples)
    return model


@pytest.fixture(scope="module")
def pixels(tiny, samples):
    return torch.stack([tiny.preprocess(s.load_image()) for s in samples[:4]])


@pytest.fixture(scope="module")
def stand_in(samples):
    """ladic-tiny with a fitted LM head and the analytic denoiser (module docstring)."""
    torch.manual_seed(0)
    model = LaDiCCaptioner(LaDiCCaptioner.variant_config("ladic-tiny"))
    model.prepare(samples)
    latent = model.module.latent
    ids, mask = model.codec.encode([r for s in samples for r in s.references], model.config.max_tokens)
    x0 = latent.encode(ids, mask)
    optimizer = torch.optim.Adam(latent.head.parameters(), lr=1e-2)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(latent.logits(x0).flatten(0, 1), latent.targets(ids).flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    prior_ids, prior_mask = model.codec.encode([s.references[0] for s in samples[:4]], model.config.max_tokens)
    prior = latent.encode(prior_ids, prior_mask)
    alpha_bar = model.diffusion.alpha_bar

    known: list[torch.Tensor] = []  # the 4 images' conditional keys, from the first full batch

    def forward(x, self_cond, t, kv):  # rows: [conditional; unconditional] x the batch's images
        ab = alpha_bar[t].float().view(-1, 1, 1)
        keys = kv[0][0].flatten(1)
        half = x.shape[0] // 2
        if not known:
            known.append(keys[:len(prior)])
        # which of the 4 images each row shows (the errprop phase injects a subset of them at a time)
        rows = [int((known[0] - keys[r]).abs().sum(1).argmin()) for r in range(half)]
        return ab.sqrt() * x + (1 - ab) * prior[rows].repeat(x.shape[0] // half, 1, 1)

    model.module.diffuser.forward = forward
    return model


def test_the_same_image_gets_the_same_caption_in_any_batch(tiny, pixels):
    first = tiny.caption(pixels[[0, 1, 2]], seed=4)
    second = tiny.caption(pixels[[3, 2, 0]], seed=4)
    assert second[2] == first[0] and second[1] == first[2]
    alone = tiny.sample_latents(pixels[2:3], *tiny._settings(None, None, None, None), seed=4)
    batch = tiny.sample_latents(pixels[[3, 2]], *tiny._settings(None, None, None, None), seed=4)
    assert torch.allclose(alone[0], batch[1], atol=1e-5)


def test_different_images_get_different_noise(pixels):
    seeds = image_seeds(pixels, 0)
    assert len(set(seeds)) == len(pixels)
    assert image_seeds(pixels[[2]], 0) == [seeds[2]] and image_seeds(pixels, 1) != seeds
    assert image_seeds(pixels.double(), 0) == seeds  # the dtype of the batch is not the image's identity
    draw = NoiseSource(seeds, 1, 6, 4).draw()
    assert not torch.equal(draw[0], draw[1])
    copies = image_seeds(torch.stack([pixels[1], pixels[1]]), 0)
    assert copies[0] == copies[1] == seeds[1]


def test_raw_captions_keep_repeats_that_decoding_removes(tiny):
    codec = tiny.codec
    ids = codec.encode(["a red circle"], 8)[0][0].tolist()  # [CLS] a red circle [SEP] [PAD]..
    repeated = [ids[0], ids[1], ids[2], ids[2], codec.dot_id, ids[2], ids[3], ids[4], codec.pad_id]
    assert codec.decode(repeated) == "a red circle."
    assert codec.decode_raw(repeated) == "a red red red circle"
    assert codec.word_positions(repeated, ep.WORD) == [("a", [1]), ("red", [2, 3, 5]), ("circle", [6])]


def test_raw_output_is_the_caption_before_deduplication(stand_in, pixels):
    raw = stand_in.caption_raw(pixels, **DECODING)
    captions = stand_in.caption(pixels, **DECODING)
    for r, c in zip(raw, captions, strict=True):
        w = ep.words(r)
        assert [x for n, x in enumerate(w) if n == 0 or x != w[n - 1]] == ep.words(c)


def test_late_injection_keeps_the_wrong_word_and_early_repairs_it(stand_in, pixels):
    base = stand_in.caption(pixels, **DECODING)
    pool = ["square", "circle", "triangle", "green", "red", "yellow"]
    kept, in_place = {}, 0
    for level in stand_in.injection_levels:
        kept[level] = 0
        for k in (1, 3):
            wrong = [ep.draw_wrong_words(pool, ep.words(b), 1, 0, f"{n}|{k}")[0] for n, b in enumerate(base)]
            out = stand_in.caption_with_injection(pixels, base, k, wrong, level, **DECODING)
            kept[level] += sum(w in ep.words(o) for w, o in zip(wrong, out, strict=True))
            if level == 0.8:  # where it survives, it sits where word k was
                in_place += sum(ep.words(o)[k] == w for w, o in zip(wrong, out, strict=True))
    # 8 injections per level; the stand-in's head decodes a word in an unseen context imperfectly
    assert kept[0.8] >= 7 and in_place == kept[0.8] and kept[0.2] <= 1
    control = [ep.words(b)[2] for b in base]
    assert stand_in.caption_with_injection(pixels, base, 2, control, 0.8, **DECODING) == base


def test_injection_checks_its_inputs(stand_in, pixels):
    base = stand_in.caption(pixels, **DECODING)  # the stand-in's prior covers these four images
    with pytest.raises(ValueError, match="not what this model samples"):
        stand_in.caption_with_injection(pixels, ["a blue square", *base[1:]], 1, ["red"] * 4, 0.5, **DECODING)
    with pytest.raises(ValueError, match="no word"):
        stand_in.caption_with_injection(pixels, base, 99, ["red"] * 4, 0.5, **DECODING)
    with pytest.raises(ValueError, match="level"):
        stand_in.injection_t(1.0)
    assert [stand_in.injection_t(x) for x in stand_in.injection_levels] == [800, 500, 200]


def test_the_phase_measures_ladic_on_every_level_and_setting(stand_in, pixels, samples, tiny_shapes):
    ids = [s.image_id for s in samples[:4]]
    references = {s.image_id: list(s.references) for s in samples[:4]}
    cfg = {"positions": 2, "wrong_words": 2, "seed": 0, "n_resamples": 20, "batch_size": 4}
    report = {"unavailable": {}}
    Probes(stand_in, pixels, ids, references, cfg, tiny_shapes.word_classes).run(
        report, DECODING, [r for s in samples for r in s.references], lambda _: None)
    assert "teacher_forced" in report["unavailable"] and "repetition_rate" in report
    curves = {(r["setting"], r["level"]) for r in report["injection"]}
    assert curves == {(s, lv) for s in ("default", "back_and_refine-False") for lv in (0.2, 0.5, 0.8)}
    summary = {(r["setting"], r["level"]): r for r in report["injection_summary"]}
    assert all(r["injections"] > 0 and not r["survival_fixed"] for r in summary.values())
    # colour for colour, shape for shape: the stand-in's head decodes some words poorly early on
    assert summary[("default", 0.2)]["survival"] <= summary[("default", 0.8)]["survival"]
    assert all(r["control_changed_after"] == 0 and r["control_changed_before"] == 0 for r in report["injection"])
    assert all(r["quality"]["CIDEr"]["control_drop"]["value"] == 0 for r in summary.values())


def test_wordpiece_words_map_to_their_tokens():
    from models.ladic.tokens import CaptionCodec, minilm_dir

    path = minilm_dir()
    if path is None:
        pytest.skip("the MiniLM package (bert-base-uncased's WordPiece vocabulary) is not installed")
    codec = CaptionCodec.from_file(path / "tokenizer.json")
    ids = codec.encode(["a man's skateboarding t-shirt, red red"], 24)[0][0].tolist()
    mapped = codec.word_positions(ids, ep.WORD)
    assert [w for w, _ in mapped] == ep.words(codec.decode(ids))
    pieces = {w: [codec.tok.id_to_token(ids[p]) for p in positions] for w, positions in mapped}
    assert pieces["skateboarding"] == ["skate", "##boarding"] and pieces["shirt"] == ["shirt"]
    assert pieces["red"] == ["red", "red"]  # a repeated word merges, as decoding merges it
