"""The autoregressive captioners' stacks: static KV cache (`compiled`) and bf16 weights, against eager fp32."""

from __future__ import annotations

import pytest
import torch

from models.vit_gpt2 import VitGpt2Captioner
from tasks.shapes import ShapesTask
from tests.test_blip_git import make

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: small models run faster on one


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    return ShapesTask(seed=0, train=8, val=2, test=2, root=tmp_path_factory.mktemp("shapes")).samples("train")


def _vit_gpt2(samples):
    torch.manual_seed(0)
    model = VitGpt2Captioner(VitGpt2Captioner.variant_config("vit-gpt2-tiny"))
    model.prepare(samples)
    return model


def _pixels(model, samples):
    return torch.stack([model.preprocess(s.load_image()) for s in samples[:2]])


def _run(model, pixels, **decoding):
    with torch.inference_mode():
        return model.generate(pixels, **decoding)


@pytest.mark.slow
@pytest.mark.parametrize("beams", [1, 3])
def test_compiled_stack_gives_the_eager_captions_in_fp32(beams, samples):
    model = _vit_gpt2(samples)
    pixels = _pixels(model, samples)
    eager = _run(model, pixels, num_beams=beams)
    model.set_stack("fp32", "compiled")
    assert "forward" in model.module.decoder.__dict__  # the decoder's forward is torch.compile'd
    seen = []
    original = model.module.generate

    def spy(*args, **kwargs):
        seen.append(kwargs.get("cache_implementation"))
        return original(*args, **kwargs)

    model.module.generate = spy
    try:
        static = _run(model, pixels, num_beams=beams)
    finally:
        del model.module.generate
        model.set_stack("fp32", "eager")
    assert "forward" not in model.module.decoder.__dict__  # eager again
    assert seen == ["static"]  # the compiled stack really asked for transformers' static cache
    assert static.captions == eager.captions and static.tokens == eager.tokens


@pytest.mark.parametrize("family,cls", [("git", "GitCaptioner"), ("blip", "BlipCaptioner")])
def test_blip_and_git_declare_compiled_unsupported_with_the_reason(family, cls, samples):
    model = make(family)
    with pytest.raises(ValueError, match=rf"stack 'compiled' is not supported by {cls} \(transformers' "
                                         r"GIT and BLIP generate fail with a static KV cache"):
        model.set_stack("fp32", "compiled")
    assert "static KV cache" in model.stack_record()["unsupported"]["compiled"]
    model.set_stack("bf16", "eager")  # bf16 is offered: fp32 pixels are cast to the converted weights
    assert len(_run(model, _pixels(model, samples)).captions) == 2
    model.set_stack("fp32", "eager")


def test_bf16_converts_the_weights_and_restores_them_exactly(samples):
    model = _vit_gpt2(samples)
    pixels = _pixels(model, samples)
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    model.set_stack("bf16", "eager")
    assert {p.dtype for p in model.module.parameters()} == {torch.bfloat16}
    assert len(_run(model, pixels).captions) == len(pixels)  # fp32 pixels are cast to the weights
    model.set_stack("fp32", "eager")
    after = model.module.state_dict()
    assert all(torch.equal(before[k], after[k]) and after[k].dtype == before[k].dtype for k in before)
