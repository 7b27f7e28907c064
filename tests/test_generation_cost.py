"""Autoregressive `generate`: the tokens actually generated and the decoder passes actually run.

Generation is steered through the output layer's bias: [EOS] banned until `min_new_tokens` and then
made certain, so every caption stops after exactly k tokens, well before `max_new_tokens`.
"""

import pytest
import torch

from tests.test_blip_git import FAMILIES, lm_bias, make


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _vit_gpt2(tiny_shapes):
    from bench.registry import create_captioner
    from models.text import BOS, EOS, PAD, UNK

    torch.manual_seed(0)
    captioner = create_captioner("vit-gpt2-tiny")
    captioner.prepare(tiny_shapes.samples("train"))
    decoder = captioner.module.decoder
    head = decoder.lm_head
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        biased.weight.copy_(head.weight)
        biased.bias.zero_()
        biased.bias[EOS] = 1e4  # stop as soon as allowed
        biased.bias[[PAD, BOS, UNK]] = -1e4  # words only, as a trained model says
    decoder.lm_head = biased
    pixels = torch.stack([captioner.preprocess(s.load_image()) for s in tiny_shapes.samples("test")[:3]])
    return captioner, pixels


def test_vit_gpt2_counts_generated_tokens_not_the_upper_bound(tiny_shapes):
    captioner, pixels = _vit_gpt2(tiny_shapes)
    for i in range(3):
        gen = captioner.generate(pixels[i:i + 1], num_beams=1, max_new_tokens=12, min_new_tokens=4)
        assert gen.tokens == [4] and gen.network_evals == [5]  # 4 words, then the pass that chose [EOS]
        assert gen.tokens == [len(c.split()) for c in gen.captions]
    free = captioner.generate(pixels[:1], num_beams=1, max_new_tokens=12)
    assert free.tokens == [0] and free.network_evals == [1] and free.captions == [""]
    assert captioner.caption(pixels[:1], num_beams=1, max_new_tokens=12, min_new_tokens=4) == \
        captioner.generate(pixels[:1], num_beams=1, max_new_tokens=12, min_new_tokens=4).captions


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_blip_and_git_count_generated_tokens_and_passes(family, tiny_shapes):
    captioner = make(family)
    end = captioner.sep_id if family == "blip" else captioner.eos_id
    with torch.no_grad():
        lm_bias(captioner)[end] = 1e4
    pixels = torch.stack([captioner.preprocess(s.load_image()) for s in tiny_shapes.samples("test")[:2]])
    gen = captioner.generate(pixels[:1], num_beams=1, max_new_tokens=10, min_new_tokens=3)
    assert gen.tokens == [3] and gen.network_evals == [4]
    ids = captioner.tokenizer(gen.captions[0], add_special_tokens=False)["input_ids"]
    assert len(ids) == 3  # the recorded tokens are the caption's own
    batch = captioner.generate(pixels, num_beams=1, max_new_tokens=10, min_new_tokens=2)
    assert batch.tokens == [2, 2] and batch.network_evals == [3, 3]
