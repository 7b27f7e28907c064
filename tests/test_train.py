import pytest
import torch

from bench.config import TrainConfig
from bench.registry import create_captioner
from bench.train import CHECKPOINT, train


def _model(samples):
    torch.manual_seed(0)
    model = create_captioner("vit-gpt2-tiny")
    model.prepare(samples)
    return model


def _quiet(_):
    pass


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tiny_shapes, tmp_path):
    samples = tiny_shapes.samples("train")[:12]  # 60 pairs -> 8 batches of 8 per epoch
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-3, warmup=0.2)
    straight = _model(samples)
    train(straight, samples, cfg, tmp_path / "a", seed=5, log=_quiet)

    crashing = _model(samples)
    calls = {"n": 0}
    original = crashing.training_loss

    def crash_in_second_epoch(batch):
        calls["n"] += 1
        if calls["n"] == 8 + 3:
            raise RuntimeError("worker killed")
        return original(batch)

    crashing.training_loss = crash_in_second_epoch
    with pytest.raises(RuntimeError, match="worker killed"):
        train(crashing, samples, cfg, tmp_path / "b", seed=5, log=_quiet)
    assert (tmp_path / "b" / CHECKPOINT).is_file()

    resumed = _model(samples)  # as in a fresh process: a new model, the same work folder
    report = train(resumed, samples, cfg, tmp_path / "b", seed=5, log=_quiet)
    assert report.resumed_from_epoch == 1 and report.epochs_done == 2
    for (name, a), (_, b) in zip(straight.module.state_dict().items(), resumed.module.state_dict().items(),
                                 strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


def test_gradient_accumulation_counts_optimizer_steps(tiny_shapes, tmp_path):
    samples = tiny_shapes.samples("train")[:8]  # 40 pairs -> 10 batches of 4 -> 5 steps of 2
    report = train(_model(samples), samples, TrainConfig(epochs=1, batch_size=4, grad_accum=2),
                   tmp_path, seed=0, log=_quiet)
    assert report.steps == 5 and report.samples_seen == 40


def test_minutes_budget_stops_training(tiny_shapes, tmp_path):
    samples = tiny_shapes.samples("train")[:8]
    report = train(_model(samples), samples, TrainConfig(epochs=None, minutes=0.0001, batch_size=4),
                   tmp_path, seed=0, log=_quiet)
    assert report.stopped_by == "minutes" and report.epochs_done == 1 and report.steps < 10
