"""The same contract test for every registered captioner, on its test-sized variant (as timm does).

Full-size and pretrained variants are checked for a consistent registration only (their weights are
not available offline and their sizes are for GPUs); each family's `-tiny` variant and the references
are trained for a few steps, caption, and round-trip through save/load.
"""

import pytest
import torch

from bench.config import TrainConfig
from bench.registry import captioners, create_captioner
from bench.train import train

RUNNABLE = [n for n in captioners.names() if n.endswith("-tiny") or captioners.entry(n).paradigm == "reference"]


@pytest.mark.parametrize("name", RUNNABLE)
def test_captioner_contract(name, tiny_shapes, tmp_path):
    torch.manual_seed(0)
    model = create_captioner(name).to("cpu")  # as the runner does: before prepare builds anything
    assert model.paradigm in ("autoregressive", "diffusion", "reference")
    train_samples = tiny_shapes.samples("train")[:16]
    model.prepare(train_samples)
    if model.trainable:
        report = train(model, train_samples, TrainConfig(epochs=1, batch_size=8, lr=1e-3),
                       tmp_path / "work", seed=0, log=lambda _: None)
        assert report.steps == 10 and all(loss == loss for loss in report.epoch_losses)  # 80 pairs / 8
        assert model.num_parameters() > 0
    test = tiny_shapes.samples("test")[:3]
    images = [s.load_image() for s in test]
    captions = model.caption_images(images)
    assert len(captions) == 3 and all(isinstance(c, str) for c in captions)
    assert model.decode_cost(**model.default_decoding()) >= 0

    model.save(tmp_path / "saved")
    again = type(model).load(tmp_path / "saved")
    assert again.caption_images(images) == captions


def test_full_size_variants_are_registered_consistently():
    for name in captioners.names():
        cls = captioners.resolve(name)
        config = cls.variant_config(name)
        assert config.variant == name
        with pytest.raises((KeyError, ValueError)):
            cls.variant_config(name, no_such_field=1)
