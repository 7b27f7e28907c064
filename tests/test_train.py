import pytest
import torch

from bench.config import TrainConfig
from bench.registry import create_captioner
from bench.train import CHECKPOINT, train


def _model(samples, name: str = "vit-gpt2-tiny", **overrides):
    torch.manual_seed(0)
    model = create_captioner(name, **overrides)
    model.prepare(samples)
    return model


def _quiet(_):
    pass


class Killed(Exception):
    pass


def _kill_after_checkpoint(epoch: int):
    """A log callback that dies right after the checkpoint of `epoch` is written (a worker killed)."""

    def log(message: str) -> None:
        if message.startswith(f"checkpoint written: epoch {epoch} "):
            raise Killed(message)

    return log


# vit-gpt2-tiny with dropout (the global torch generator matters) and augmentation (python's `random`);
# ladic-tiny, whose loss draws timesteps and noise (torch), self-conditioning (python) and CFG drops.
RESUMABLE = [("vit-gpt2-tiny", {"dropout": 0.2, "augment": "crop_flip"}),
             ("ladic-tiny", {"dropout": 0.1, "augment": "crop_flip"})]


@pytest.mark.parametrize("name, overrides", RESUMABLE, ids=[n for n, _ in RESUMABLE])
def test_a_job_killed_after_epoch_one_resumes_bit_identically(tiny_shapes, tmp_path, name, overrides):
    samples = tiny_shapes.samples("train")[:12]  # 60 pairs -> 8 batches of 8 per epoch
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-3, warmup=0.2)
    straight = _model(samples, name, **overrides)
    train(straight, samples, cfg, tmp_path / "a", seed=5, log=_quiet)

    with pytest.raises(Killed):
        train(_model(samples, name, **overrides), samples, cfg, tmp_path / "b", seed=5,
              log=_kill_after_checkpoint(1))
    torch.manual_seed(123)  # a fresh worker's generators are anywhere: the checkpoint must not care
    resumed = _model(samples, name, **overrides)  # a new process: a new model, the same work folder
    report = train(resumed, samples, cfg, tmp_path / "b", seed=5, log=_quiet)
    assert report.resumed_from_epoch == 1 and report.epochs_done == 2

    for (key, a), (_, b) in zip(straight.module.state_dict().items(), resumed.module.state_dict().items(),
                                strict=True):
        assert torch.equal(a, b), key
    test = tiny_shapes.samples("test")[:6]
    pixels = torch.stack([straight.preprocess(s.load_image()) for s in test])
    assert straight.caption(pixels) == resumed.caption(pixels)


def test_resume_after_a_crash_mid_epoch_matches_an_uninterrupted_run(tiny_shapes, tmp_path):
    samples = tiny_shapes.samples("train")[:12]
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-3, warmup=0.2)
    straight = _model(samples, dropout=0.2)
    train(straight, samples, cfg, tmp_path / "a", seed=5, log=_quiet)

    crashing = _model(samples, dropout=0.2)
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

    resumed = _model(samples, dropout=0.2)
    report = train(resumed, samples, cfg, tmp_path / "b", seed=5, log=_quiet)
    assert report.resumed_from_epoch == 1 and report.epochs_done == 2
    for (name, a), (_, b) in zip(straight.module.state_dict().items(), resumed.module.state_dict().items(),
                                 strict=True):
        assert torch.equal(a, b), name


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
