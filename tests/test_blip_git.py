"""BLIP and GIT captioners: tiny random-init variants trained a few steps, save/load round trips,
the pretrained variants' offline error, BLIP's prompt handling, and the decoding knobs."""

from __future__ import annotations

import pytest
import torch

from bench.config import TrainConfig
from bench.train import train
from models.blip import BlipCaptioner, pre_caption, strip_prompt
from models.git import GitCaptioner
from models.weights import WeightsNotFound
from tasks.shapes import ShapesTask

# Test sizes: 32 px, one layer each side, width 32 (the vocabulary, ~30k word pieces, dominates).
SMALL = dict(image_size=32, patch_size=8, vision_width=32, vision_layers=1, vision_heads=2,
             text_width=32, text_layers=1, text_heads=2)
FAMILIES = {"blip": (BlipCaptioner, "blip-tiny", "blip-base"), "git": (GitCaptioner, "git-tiny", "git-base")}


def make(family: str, seed: int = 0, **overrides):
    cls, tiny, _ = FAMILIES[family]
    torch.manual_seed(seed)
    return cls(cls.variant_config(tiny, **{**SMALL, **overrides}))


def lm_bias(captioner) -> torch.Tensor:
    """The output layer's bias, to steer generation ([SEP] always / never)."""
    m = captioner.module
    return m.text_decoder.cls.predictions.decoder.bias if hasattr(m, "text_decoder") else m.output.bias


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: small models run faster on one


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return ShapesTask(seed=0, train=8, val=2, test=4, root=tmp_path_factory.mktemp("shapes"))


@pytest.fixture(scope="module")
def pixels(task):
    """Test images preprocessed once per family (both use 32 px here, with different processors)."""
    images = [s.load_image() for s in task.samples("test")]
    return {f: torch.stack([make(f).preprocess(im) for im in images]) for f in FAMILIES}


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_trains_and_captions(family, task, tmp_path):
    captioner = make(family)
    cfg = TrainConfig(epochs=3, batch_size=8, lr=2e-3, warmup=0.1, amp="off")
    report = train(captioner, task.samples("train"), cfg, tmp_path, seed=0, log=lambda _: None)
    assert report.steps == 15  # 8 images x 5 captions / 8 per batch x 3 epochs
    assert report.epoch_losses[-1] < report.epoch_losses[0]
    captions = captioner.caption_images([s.load_image() for s in task.samples("test")])
    assert len(captions) == 4 and all(isinstance(c, str) for c in captions)


@pytest.mark.parametrize("family", FAMILIES)
def test_loss_equals_transformers_loss(family, task):
    """The fast loss (logits only where targets exist) is transformers' own loss, unsmoothed."""
    captioner = make(family, label_smoothing=0.0)
    samples = task.samples("train")[:3]
    batch = captioner.collate([captioner.preprocess(s.load_image(), train=True) for s in samples],
                              [s.references[0] for s in samples])
    ours = captioner.training_loss(batch)
    theirs = captioner.module(**batch).loss
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("family", FAMILIES)
def test_save_pretrained_directory_gives_same_captions(family, pixels, tmp_path):
    cls, tiny, _ = FAMILIES[family]
    captioner = make(family, seed=1)
    expected = captioner.caption(pixels[family])
    captioner.save(tmp_path / "saved")
    assert (tmp_path / "saved" / "config.json").is_file()  # a save_pretrained directory
    assert cls.load(tmp_path / "saved").caption(pixels[family]) == expected
    # The same directory as the weights source of a pretrained variant (through models.weights).
    reloaded = cls(cls.variant_config(tiny, weights=str(tmp_path / "saved")))
    assert reloaded.caption(pixels[family]) == expected
    # A bare save_pretrained directory (model + processor, no bench config) loads too.
    captioner.module.save_pretrained(tmp_path / "bare")
    captioner.processor.save_pretrained(tmp_path / "bare")
    assert cls.load(tmp_path / "bare").config.weights == str(tmp_path / "bare")


@pytest.mark.parametrize("family", FAMILIES)
def test_pretrained_variant_offline_names_id_and_remedy(family, monkeypatch):
    from huggingface_hub import try_to_load_from_cache

    cls, _, base = FAMILIES[family]
    source = cls.variants[base].weights
    if isinstance(try_to_load_from_cache(source, "config.json"), str):
        pytest.skip(f"{source} is in the Hugging Face cache here")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("BENCH_WEIGHTS_DIR", raising=False)
    with pytest.raises(WeightsNotFound) as info:
        cls(cls.variant_config(base))
    message = str(info.value)
    assert source in message and "save_pretrained" in message and "BENCH_WEIGHTS_DIR" in message
    assert f"hf download {source}" in message and repr(f"{family}-tiny") in message
    assert info.value.__cause__ is None and info.value.__suppress_context__  # nothing to print but this


def test_blip_defaults_are_blips_own():
    config = BlipCaptioner.variants["blip-base"]
    assert (config.weights, config.num_beams, config.max_length, config.min_length, config.prompt) == (
        "Salesforce/blip-image-captioning-base", 3, 20, 5, "a picture of ")
    git = GitCaptioner.variants["git-base"]
    assert (git.weights, git.num_beams, git.length_penalty) == ("microsoft/git-base-coco", 4, 0.6)


def test_pre_caption_is_blips():
    assert pre_caption("Two shapes:  a Red circle, a square.", 30) == "two shapes a red circle, a square"
    assert pre_caption("one two three four", 2) == "one two"


def test_strip_prompt():
    assert strip_prompt("a picture of a red circle", "a picture of ") == "a red circle"
    assert strip_prompt("A Picture of  a picture of two squares", "a picture of ") == "two squares"
    assert strip_prompt("a picture of", "a picture of ") == ""
    assert strip_prompt("a pictured circle", "a picture of ") == "a pictured circle"
    assert strip_prompt("two circles", "") == "two circles"


def test_blip_prompt_never_in_caption(pixels, monkeypatch):
    captioner = make("blip")
    tok = captioner.tokenizer
    prefix = [captioner.bos_id, *tok("a picture of", add_special_tokens=False)["input_ids"]]
    # Real generation continues [DEC] + prompt, and only what follows it is decoded.
    generate = captioner.module.generate
    raw = generate(pixel_values=pixels["blip"], input_ids=torch.tensor([prefix + [captioner.sep_id]] * 4),
                   num_beams=3, max_length=20, min_length=5)
    assert raw[:, : len(prefix)].tolist() == [prefix] * 4
    assert torch.equal(captioner.generate_ids(pixels["blip"]), raw[:, len(prefix):])
    # A model that says the prompt again (as an untrained or prompt-fine-tuned one can) loses it too.
    said = tok("a picture of a picture of a red circle", add_special_tokens=False)["input_ids"]
    forced = torch.tensor([prefix + said + [captioner.sep_id]] * 4)
    monkeypatch.setattr(captioner.module, "generate", lambda **_: forced)
    assert captioner.caption(pixels["blip"]) == ["a red circle"] * 4
    assert captioner.caption(pixels["blip"], prompt="a photo of ") == ["a picture of a picture of a red circle"] * 4


@pytest.mark.parametrize("family", FAMILIES)
def test_max_and_min_length_are_honoured(family, pixels):
    captioner = make(family)
    prefix = len(captioner._prefix(None)) if family == "blip" else 1  # [DEC] + prompt, or [CLS]
    bias = lm_bias(captioner)
    with torch.no_grad():
        bias[captioner.sep_id if family == "blip" else captioner.eos_id] = -1e4  # never stop early
    pv = pixels[family]
    if family == "blip":  # BLIP counts max_length over the whole sequence, as upstream
        assert captioner.generate_ids(pv).shape[1] == 20 - prefix
        assert captioner.generate_ids(pv, max_length=9).shape[1] == 9 - prefix
    else:
        assert captioner.generate_ids(pv).shape[1] == captioner.config.max_new_tokens
        assert captioner.generate_ids(pv, max_length=7).shape[1] == 7 - prefix
    assert captioner.generate_ids(pv, max_new_tokens=3).shape[1] == 3
    assert all(len(c.split()) <= 3 for c in captioner.caption(pv, max_new_tokens=3))

    stop = captioner.sep_id if family == "blip" else captioner.eos_id
    with torch.no_grad():
        bias[stop] = 1e4  # stop at once unless a minimum length forbids it
    lengths = lambda ids: (ids != stop).logical_and(ids != captioner.pad_id).sum(1).tolist()  # noqa: E731
    if family == "blip":
        assert lengths(captioner.generate_ids(pv, min_length=0)) == [0] * 4
        assert lengths(captioner.generate_ids(pv)) == [5 - prefix] * 4  # BLIP's min_length 5
        assert lengths(captioner.generate_ids(pv, min_length=9)) == [9 - prefix] * 4
    else:
        assert lengths(captioner.generate_ids(pv)) == [0] * 4  # GIT: no minimum
        assert lengths(captioner.generate_ids(pv, min_length=5)) == [5 - prefix] * 4  # [CLS] counts
    assert lengths(captioner.generate_ids(pv, min_new_tokens=6, max_new_tokens=8)) == [6] * 4


@pytest.mark.parametrize("family", FAMILIES)
def test_num_beams_is_honoured(family, pixels, monkeypatch):
    captioner = make(family)
    # transformers' BLIP.generate forwards to its text decoder's generate; GIT's is the model's own.
    target = captioner.module.text_decoder if family == "blip" else captioner.module
    seen = []
    original = target.generate

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(target, "generate", spy)
    default = captioner.default_decoding()["num_beams"]
    captioner.caption(pixels[family])
    captioner.caption(pixels[family], num_beams=2)
    captioner.caption(pixels[family], num_beams=1)
    assert [kw["num_beams"] for kw in seen] == [default, 2, 1]


def test_decode_cost_is_generated_tokens_times_beams():
    blip = make("blip")
    assert blip.decode_cost() == (20 - 4) * 3  # max_length 20 less [DEC] + "a picture of", 3 beams
    assert blip.decode_cost(**blip.default_decoding()) == 48
    assert blip.decode_cost(num_beams=1, max_new_tokens=10) == 10
    assert blip.decode_cost(num_tokens=9.5) == round(9.5 * 3)
    git = make("git")
    assert git.decode_cost(**git.default_decoding()) == git.config.max_new_tokens * 4
    assert git.decode_cost(num_beams=2, max_length=11) == 20
    assert git.decode_cost(num_tokens=12) == 48
