"""The shared base of BLIP and GIT (models/hf_captioner.py): what each family's hooks decide."""

from __future__ import annotations

import pytest
import torch

from tests.test_blip_git import FAMILIES, make


@pytest.fixture(scope="module")
def models():
    return {family: make(family) for family in FAMILIES}


def test_decoder_start_is_dec_and_prompt_for_blip_and_cls_for_git(models):
    blip, git = models["blip"], models["git"]
    prompt = blip.tokenizer("a picture of", add_special_tokens=False)["input_ids"]
    assert blip._prefix() == [blip.tokenizer.convert_tokens_to_ids("[DEC]"), *prompt]
    assert blip._prefix("") == blip._prefix()[:1]
    assert git._prefix() == [git.tokenizer.cls_token_id]
    # Training batches start with the same token generation starts from; the start and prompt carry no loss.
    for family, captioner in models.items():
        batch = captioner.collate([torch.zeros(3, 32, 32)], ["A red circle."])
        start = len(captioner._prefix())
        assert batch["input_ids"][0, :start].tolist() == captioner._prefix(), family
        assert (batch["labels"][0, :start] == -100).all() and (batch["labels"][0, start:] != -100).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_length_limits_given_new_tokens_win_then_whole_sequence_then_defaults(family, models):
    captioner = models[family]
    assert captioner._limit("max", 9, 3) == {"max_new_tokens": 3}
    assert captioner._limit("min", 9, None) == {"min_length": 9}
    default = {"blip": {"max_length": 20}, "git": {"max_new_tokens": 24}}  # blip-tiny, git-tiny
    assert captioner._limit("max", None, None) == default[family]


@pytest.mark.parametrize(("family", "own", "other"), [("blip", {"prompt": "a photo of "}, "length_penalty"),
                                                     ("git", {"length_penalty": 1.0}, "prompt")])
def test_a_knob_the_family_lacks_is_an_error(family, own, other, models):
    captioner = models[family]
    pixels = torch.zeros(1, 3, 32, 32)
    assert captioner.decode_cost(**own, min_new_tokens=2) == captioner.decode_cost()  # accepted, no cost
    for call in (lambda **k: captioner.caption(pixels, max_new_tokens=2, **k),
                 lambda **k: captioner.continue_from(pixels, [["red"]], max_new_tokens=2, **k),
                 captioner.decode_cost):
        with pytest.raises(TypeError, match=other):
            call(**{other: own.get(other, "x")})
