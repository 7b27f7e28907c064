"""The error-propagation probes of BLIP and GIT (`continue_from`, `teacher_forced_words`).

The models are tiny and untrained but steered so that their greedy captions are testable:
  - the weight matrices are re-drawn with unit-gain scale (HF's 0.02 init makes an untrained decoder
    ignore the image and say one word forever), so captions differ per image and per position;
  - the output layer can say only a few whole-word tokens and [SEP] (a -1e4 bias on every other token),
    so a greedy caption's words re-tokenise to exactly the pieces the model generated. Without this an
    untrained model says word pieces ("##ing") and punctuation, and "the first k words" of its caption
    need not be the first tokens it generated: forcing them would test the tokenizer, not the forcing.
    The prompt's words are not among them, so a prompt left in the output would show.
"""

from __future__ import annotations

import pytest
import torch

from bench.metrics.errprop import words
from models.blip import BlipCaptioner
from models.git import GitCaptioner

SMALL = dict(image_size=32, patch_size=8, vision_width=32, vision_layers=1, vision_heads=2,
             text_width=32, text_layers=1, text_heads=2)
FAMILIES = {"blip": (BlipCaptioner, "blip-tiny"), "git": (GitCaptioner, "git-tiny")}
SAYABLE = "red blue green circle square triangle two small large on and left".split()
#: a word BERT's vocabulary lacks: three pieces (z ##yx ##w), to force and score multi-piece words.
PIECES = "zyxw"


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: small models run faster on one


def output_layer(captioner) -> torch.nn.Linear:
    m = captioner.module
    return m.text_decoder.cls.predictions.decoder if hasattr(m, "text_decoder") else m.output


def stop_id(captioner) -> int:
    return captioner.sep_id if isinstance(captioner, BlipCaptioner) else captioner.eos_id


def steered(family: str, seed: int = 0):
    """A tiny captioner whose greedy captions depend on the image and use only SAYABLE words + [SEP]."""
    cls, tiny = FAMILIES[family]
    torch.manual_seed(seed)
    captioner = cls(cls.variant_config(tiny, **SMALL))
    with torch.no_grad():
        for name, p in captioner.module.named_parameters():
            if p.dim() == 2 and "embeddings" not in name:
                p.normal_(0.0, 1.5 / p.shape[1] ** 0.5)
        bias = output_layer(captioner).bias
        allowed = torch.zeros_like(bias, dtype=torch.bool)
        allowed[captioner.tokenizer.convert_tokens_to_ids(SAYABLE)] = True
        allowed[stop_id(captioner)] = True
        bias[~allowed] = -1e4
    return captioner


@pytest.fixture(scope="module")
def models():
    """One steered captioner per family, shared (tests that change weights build their own)."""
    return {f: steered(f) for f in FAMILIES}


@pytest.fixture(scope="module")
def pixels():
    torch.manual_seed(0)
    return torch.randn(5, 3, 32, 32)


def greedy(captioner) -> dict:
    """The errprop phase's baseline decoding: the defaults, greedy."""
    return {**captioner.default_decoding(), "num_beams": 1}


def no_prompt(caption: str) -> bool:
    return not caption.startswith("a picture of") and "picture" not in words(caption)


@pytest.mark.parametrize("family", FAMILIES)
def test_forcing_the_own_greedy_words_changes_nothing(family, models, pixels):
    """For every k, forcing the first k words of the greedy caption gives that greedy caption back:
    with the phase's decoding passed on, and with none (the phase calls continue_from without it)."""
    captioner = models[family]
    captions = captioner.caption(pixels, **greedy(captioner))
    split = [words(c) for c in captions]
    assert len(set(captions)) > 1 and all(split) and all(no_prompt(c) for c in captions)  # a real test
    longest = max(len(w) for w in split)
    for k in range(longest + 1):  # past a caption's end: it must stop there again
        prefixes = [w[:k] for w in split]
        assert captioner.continue_from(pixels, prefixes, **greedy(captioner)) == captions, k
        if k in (0, 2, longest):  # the defaults are the same settings: a few positions suffice
            assert captioner.continue_from(pixels, prefixes) == captions, k


@pytest.mark.parametrize("family", FAMILIES)
def test_forced_words_of_different_piece_lengths_in_one_call(family, models, pixels):
    captioner = models[family]
    captions = captioner.caption(pixels, num_beams=1, max_new_tokens=8)
    split = [words(c) for c in captions]
    # Equal word lengths (as the phase passes them), unequal piece lengths: 2, 4, 2, 4, 4 pieces.
    prefixes = [w[:1] + [PIECES if n % 2 else "blue"] for n, w in enumerate(split[:4])] + [[PIECES, "red"]]
    together = captioner.continue_from(pixels, prefixes, max_new_tokens=8)
    alone = [captioner.continue_from(pixels[n: n + 1], [p], max_new_tokens=8)[0] for n, p in enumerate(prefixes)]
    assert together == alone  # grouping by piece length keeps each image with its own prefix
    for prefix, caption in zip(prefixes, together, strict=True):
        assert words(caption)[: len(prefix)] == prefix and no_prompt(caption)
        # The forced pieces count towards max_new_tokens, as the generated ones do.
        pieces = captioner.tokenizer(caption, add_special_tokens=False)["input_ids"]
        assert len(pieces) <= 8
    # A prefix at or over the budget comes back as it is; an empty one is the plain greedy caption.
    assert captioner.continue_from(pixels[:2], [[PIECES, "red"], []], max_new_tokens=3) == [
        f"{PIECES} red", captions[1] if len(split[1]) <= 3 else " ".join(split[1][:3])]


def test_blip_lengths_count_the_prompt_and_forced_pieces(pixels):
    """BLIP's max_length counts [DEC] + prompt too; with [SEP] banned every caption fills it."""
    captioner = steered("blip")
    with torch.no_grad():
        output_layer(captioner).bias[captioner.sep_id] = -1e4
    out = captioner.continue_from(pixels[:2], [[PIECES], ["red"]], max_length=10)
    assert [len(captioner.tokenizer(c, add_special_tokens=False)["input_ids"]) for c in out] == [6, 6]
    caption = captioner.caption(pixels[:1], num_beams=1)
    assert len(words(caption[0])) == 20 - 4  # max_length 20 less [DEC] + "a picture of"
    assert captioner.continue_from(pixels[:1], [words(caption[0])[:3]]) == caption


@pytest.mark.parametrize("family", FAMILIES)
def test_teacher_forcing_on_the_own_greedy_caption_is_all_correct(family, models, pixels):
    """Every word of a greedy caption is, by construction, the argmax given the words before it: the
    first word too (its context, [DEC] + prompt or [CLS], is the same in generation and teacher
    forcing), and [SEP] is never judged. This needs a greedy caption generated without a minimum
    length: BLIP's default min_length 5 can make it say a word where [SEP] was the argmax (see below)."""
    captioner = models[family]
    captions = captioner.caption(pixels, **{**greedy(captioner), "min_length": 0})
    forced = captioner.teacher_forced_words(pixels, captions)
    assert [len(f) for f in forced] == [len(words(c)) for c in captions]
    assert all(all(f) for f in forced)
    # Batching (with right padding) changes nothing.
    assert captioner.teacher_forced_words(pixels, captions, batch_size=2) == forced


@pytest.mark.parametrize("family", FAMILIES)
def test_words_said_only_because_stopping_was_banned_are_wrong(family, pixels):
    captioner = steered(family)
    with torch.no_grad():
        output_layer(captioner).bias[stop_id(captioner)] = 1e4  # the argmax is always to stop
    captions = captioner.caption(pixels[:2], num_beams=1, min_new_tokens=3)
    assert [len(words(c)) for c in captions] == [3, 3]
    assert captioner.teacher_forced_words(pixels[:2], captions) == [[False] * 3] * 2
    # continue_from honours the minimum the same way, the forced pieces counting towards it.
    for k in range(4):
        prefixes = [words(c)[:k] for c in captions]
        assert captioner.continue_from(pixels[:2], prefixes, min_new_tokens=3) == captions
    if family == "blip":  # BLIP's default min_length 5 counts [DEC] + prompt: one word
        assert [len(words(c)) for c in captioner.caption(pixels[:2], num_beams=1)] == [1, 1]
        assert captioner.continue_from(pixels[:2], [[], []]) == captioner.caption(pixels[:2], num_beams=1)


@pytest.mark.parametrize("family", FAMILIES)
def test_teacher_forcing_matches_the_models_own_forward(family, models, pixels):
    """Per word: all its pieces are the argmax of the model's plain forward pass on that caption alone;
    punctuation is no word (as in errprop.words) and a multi-piece word needs every piece right."""
    captioner = models[family]
    tok = captioner.tokenizer
    own = [words(c) for c in captioner.caption(pixels, num_beams=1, max_new_tokens=6)]
    captions = [" ".join(w[:2]) + f", {PIECES} " + " ".join(w[2:]) for w in own]
    captions[1] = f"{PIECES}-{PIECES}"  # two words, 7 pieces
    forced = captioner.teacher_forced_words(pixels, captions)
    for n, caption in enumerate(captions):
        start = captioner._prefix(None) if family == "blip" else [captioner.bos_id]
        ids = torch.tensor([start + tok(caption, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            logits = captioner.module(pixel_values=pixels[n: n + 1], input_ids=ids).logits[0, -ids.shape[1]:]
        hits = (logits[:-1].argmax(-1) == ids[0, 1:])[len(start) - 1:].tolist()
        expected, t = [], 0
        for segment in caption.replace(",", " , ").replace("-", " - ").split():
            size = len(tok(segment, add_special_tokens=False)["input_ids"])
            if words(segment):
                expected.append(all(hits[t: t + size]))
            t += size
        assert forced[n] == expected and len(expected) == len(words(caption))
    assert forced[0][2] is False  # the forced nonsense word is not what an untrained model predicts
    assert forced[0][:2] == [True, True]  # its own first two words, teacher-forced


@pytest.mark.parametrize("family", FAMILIES)
def test_right_word_control_changes_nothing_with_punctuation(family, pixels):
    """The errprop control (each caption's own word k forced through `caption_with_injection`) gives
    the caption back at every k, also when the captions carry commas between words (shapes captions
    do, and BLIP keeps them): the forced prefix is the caption's text, punctuation included."""
    from bench.metrics.errprop import injection_effect

    captioner = steered(family)
    with torch.no_grad():  # "," becomes sayable, and likely: every caption has some
        comma = captioner.tokenizer.convert_tokens_to_ids(",")
        output_layer(captioner).bias[comma] = 0.2 if family == "blip" else 1.0
    captions = captioner.caption(pixels, **greedy(captioner))
    assert sum("," in c for c in captions) >= 2 and all(words(c) for c in captions)  # a real test
    for k in range(max(len(words(c)) for c in captions)):
        rows = [n for n, c in enumerate(captions) if len(words(c)) > k]
        control = [words(captions[n])[k] for n in rows]
        out = captioner.caption_with_injection(pixels[rows], [captions[n] for n in rows], k, control,
                                               **greedy(captioner))
        assert out == [captions[n] for n in rows], k
        for n, after in zip(rows, out, strict=True):
            effect = injection_effect(words(captions[n]), words(after), k, words(captions[n])[k])
            assert effect["changed_before"] == effect["changed_after"] == 0
