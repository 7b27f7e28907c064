"""Checkpoints from a folder others can write: no code runs from them, a damaged one costs one epoch."""

import shutil

import pytest
import torch

from bench.checkpoints import CHECKPOINT, PREVIOUS_CHECKPOINT, CheckpointError, load_checkpoint
from bench.config import TrainConfig
from bench.registry import create_captioner
from bench.train import train


class WritesAFile:
    """Unpickling this calls open(path, "w"): code from the data file runs and leaves a file behind."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


class Killed(Exception):
    pass


def _model(samples):
    torch.manual_seed(0)
    model = create_captioner("vit-gpt2-tiny", dropout=0.2)
    model.prepare(samples)
    return model


def _kill_after_checkpoint(epoch: int, lines: list[str]):
    def log(message: str) -> None:
        lines.append(message)
        if message.startswith(f"checkpoint written: epoch {epoch} "):
            raise Killed(message)

    return log


CFG = TrainConfig(epochs=3, batch_size=8, lr=1e-3, warmup=0.2)


def test_a_crafted_pickle_as_checkpoint_is_refused_naming_the_file_and_runs_no_code(tiny_shapes, tmp_path):
    samples = tiny_shapes.samples("train")[:6]
    proof = tmp_path / "proof-it-runs"
    torch.save({"module": WritesAFile(proof)}, tmp_path / "probe.pt")
    torch.load(tmp_path / "probe.pt", weights_only=False)  # the crafted file really runs code when trusted
    assert proof.is_file()

    marker = tmp_path / "written-by-the-checkpoint"
    work = tmp_path / "train_state"
    work.mkdir()
    torch.save({"module": WritesAFile(marker), "optimizer": {}, "scheduler": {}, "report": {}, "rng": {}},
               work / CHECKPOINT)
    lines: list[str] = []
    report = train(_model(samples), samples, TrainConfig(epochs=1, batch_size=8), work, seed=0,
                   log=lines.append)
    assert not marker.exists()
    refused = [line for line in lines if "refused" in line]
    assert refused and str(work / CHECKPOINT) in refused[0], lines
    assert report.resumed_from_epoch == 0 and report.epochs_done == 1
    assert (work / (CHECKPOINT + ".bad")).is_file()  # kept aside for a look, never loaded again


def test_a_crafted_per_rank_random_state_file_is_refused(tmp_path):
    marker = tmp_path / "written"
    torch.save({"epochs_done": 1, "rng": WritesAFile(marker)}, tmp_path / "rng-rank1.pt")
    with pytest.raises(CheckpointError, match="rng-rank1.pt refused"):
        load_checkpoint(tmp_path / "rng-rank1.pt", torch.device("cpu"), ("epochs_done", "rng"))
    assert not marker.exists()


def test_a_truncated_checkpoint_falls_back_to_the_previous_one_and_still_matches(tiny_shapes, tmp_path):
    samples = tiny_shapes.samples("train")[:12]
    straight = _model(samples)
    train(straight, samples, CFG, tmp_path / "a", seed=5, log=lambda _: None)

    work, lines = tmp_path / "b", []
    with pytest.raises(Killed):
        train(_model(samples), samples, CFG, work, seed=5, log=_kill_after_checkpoint(2, lines))
    assert (work / PREVIOUS_CHECKPOINT).is_file()
    data = (work / CHECKPOINT).read_bytes()
    (work / CHECKPOINT).write_bytes(data[: len(data) // 2])  # a disk that filled, a copy cut short

    lines.clear()
    resumed = _model(samples)
    report = train(resumed, samples, CFG, work, seed=5, log=lines.append)
    assert any(str(work / CHECKPOINT) in line and "unreadable" in line for line in lines), lines
    assert any("previous checkpoint" in line for line in lines), lines
    assert report.resumed_from_epoch == 1 and report.epochs_done == 3
    for (key, a), (_, b) in zip(straight.module.state_dict().items(), resumed.module.state_dict().items(),
                                strict=True):
        assert torch.equal(a, b), key


def test_a_truncated_only_checkpoint_restarts_the_job_saying_so(tiny_shapes, tmp_path):
    samples = tiny_shapes.samples("train")[:6]
    work = tmp_path / "w"
    train(_model(samples), samples, TrainConfig(epochs=1, batch_size=8), work, seed=0, log=lambda _: None)
    (work / PREVIOUS_CHECKPOINT).unlink(missing_ok=True)
    shutil.copy(work / CHECKPOINT, tmp_path / "whole.pt")
    (work / CHECKPOINT).write_bytes((tmp_path / "whole.pt").read_bytes()[:200])

    lines: list[str] = []
    report = train(_model(samples), samples, TrainConfig(epochs=2, batch_size=8), work, seed=0, log=lines.append)
    assert any(str(work / CHECKPOINT) in line and "unreadable" in line for line in lines), lines
    assert any("restarts from epoch 0" in line for line in lines), lines
    assert report.resumed_from_epoch == 0 and report.epochs_done == 2
