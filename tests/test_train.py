import pytest
import torch

from bench.api import Captioner, CaptionerConfig
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
# ladic-tiny, whose loss draws timesteps and noise (torch), self-conditioning (python) and CFG drops;
# mdm-tiny trained as MDLM trains (gradient clipping and an EMA of the weights, both checkpointed).
RESUMABLE = [("vit-gpt2-tiny", {"dropout": 0.2, "augment": "crop_flip"}, {}),
             ("ladic-tiny", {"dropout": 0.1, "augment": "crop_flip"}, {}),
             ("mdm-tiny", {"dropout": 0.1}, {"grad_clip": 0.5, "ema": 0.9})]


@pytest.mark.parametrize("name, overrides, options", RESUMABLE, ids=[n for n, _, _ in RESUMABLE])
def test_a_job_killed_after_epoch_one_resumes_bit_identically(tiny_shapes, tmp_path, name, overrides, options):
    samples = tiny_shapes.samples("train")[:12]  # 60 pairs -> 8 batches of 8 per epoch
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-3, warmup=0.2, **options)
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


# -- gradient clipping and the moving average, on a module whose gradient is known ------------------


class LinearCaptioner(Captioner):
    """loss = w . g: the gradient is g whatever w is (a hand-made check of the trainer's options)."""

    paradigm = "autoregressive"
    variants = {"linear": CaptionerConfig()}

    def __init__(self, g: list[float]):
        super().__init__(CaptionerConfig())
        self.g = torch.tensor(g)
        self.net = torch.nn.Module()
        self.net.w = torch.nn.Parameter(torch.zeros(len(g)))

    @property
    def module(self) -> torch.nn.Module:
        return self.net

    def preprocess(self, image, train=False):
        return torch.zeros(1)

    def collate(self, images, captions):
        return {"x": torch.stack(images)}

    def training_loss(self, batch):
        return self.net.w @ self.g + 0.0 * batch["x"].sum()

    def caption(self, pixel_values, **decoding):
        return ["w"] * len(pixel_values)

    def save(self, directory):
        raise NotImplementedError

    @classmethod
    def load(cls, directory):
        raise NotImplementedError


def _recording_optimizer(monkeypatch) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(the gradient each AdamW step was given, the weights after each step)."""
    grads: list[torch.Tensor] = []
    weights: list[torch.Tensor] = []
    step = torch.optim.AdamW.step

    def recording(self, *args, **kwargs):
        grads.append(torch.cat([p.grad.flatten().clone() for g in self.param_groups for p in g["params"]]))
        out = step(self, *args, **kwargs)
        weights.append(torch.cat([p.detach().flatten().clone() for g in self.param_groups for p in g["params"]]))
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", recording)
    return grads, weights


@pytest.mark.parametrize("clip, expected", [(1.0, [0.6, 0.8]), (10.0, [3.0, 4.0]), (None, [3.0, 4.0])])
def test_gradient_clipping_caps_the_global_norm(tiny_shapes, tmp_path, monkeypatch, clip, expected):
    samples = tiny_shapes.samples("train")[:4]  # 20 pairs -> 5 steps
    grads, _ = _recording_optimizer(monkeypatch)
    train(LinearCaptioner([3.0, 4.0]), samples, TrainConfig(epochs=1, batch_size=4, grad_clip=clip),
          tmp_path, log=_quiet)  # |g| = 5: clipped to norm 1 (g / 5), left alone under 10
    assert len(grads) == 5
    for g in grads:
        assert torch.allclose(g, torch.tensor(expected), atol=1e-5)


def test_the_moving_average_is_the_closed_form_and_becomes_the_weights(tiny_shapes, tmp_path, monkeypatch):
    samples = tiny_shapes.samples("train")[:4]
    _, weights = _recording_optimizer(monkeypatch)
    model = LinearCaptioner([1.0, -2.0])
    start = model.net.w.detach().clone()
    decay = 0.8
    report = train(model, samples, TrainConfig(epochs=2, batch_size=4, lr=0.1, ema=decay), tmp_path, log=_quiet)
    n = report.steps
    assert n == len(weights) == 10 and not torch.allclose(weights[-1], start)
    # decay^n w_0 + (1 - decay) sum_k decay^(n - k) w_k, k = 1..n
    expected = decay ** n * start + (1 - decay) * sum(decay ** (n - k) * w for k, w in enumerate(weights, 1))
    assert torch.allclose(model.net.w.detach(), expected, atol=1e-6)
    assert not torch.allclose(model.net.w.detach(), weights[-1], atol=1e-3)  # not the last weights


def test_a_former_key_and_a_checkpoint_without_ema_are_handled(tiny_shapes, tmp_path):
    assert TrainConfig(max_grad_norm=2.0).grad_clip == 2.0
    with pytest.raises(ValueError, match="grad_clip"):
        TrainConfig(max_grad_norm=2.0, grad_clip=1.0)
    samples = tiny_shapes.samples("train")[:4]
    train(LinearCaptioner([1.0]), samples, TrainConfig(epochs=1, batch_size=4), tmp_path, log=_quiet)
    with pytest.raises(ValueError, match="no EMA"):
        train(LinearCaptioner([1.0]), samples, TrainConfig(epochs=2, batch_size=4, ema=0.9), tmp_path, log=_quiet)


class _CountingPreprocess:
    """Wraps a captioner's preprocess and counts the calls made with train=True."""

    def __init__(self, model):
        self.calls, self.inner = 0, model.preprocess

    def __call__(self, image, train: bool = False):
        self.calls += train
        return self.inner(image, train=train)


@pytest.mark.parametrize("augment, cache, expected_calls", [
    ("none", 1 << 30, 12),          # each image once, then its tensor for its 5 captions x 2 epochs
    ("none", 0, 120),               # no room: every pair decodes its image
    ("crop_flip", 1 << 30, 120),    # random augmentation is never cached
])
def test_training_images_are_preprocessed_once_unless_augmented(tiny_shapes, tmp_path, monkeypatch,
                                                               augment, cache, expected_calls):
    from bench import train as train_module

    samples = tiny_shapes.samples("train")[:12]  # 12 images x 5 captions = 60 pairs per epoch
    monkeypatch.setattr(train_module, "IMAGE_CACHE_BYTES", cache)
    model = _model(samples, "mdm-tiny", augment=augment)
    counter = _CountingPreprocess(model)
    monkeypatch.setattr(model, "preprocess", counter)
    train(model, samples, TrainConfig(epochs=2, batch_size=8, lr=1e-3), tmp_path, seed=3, log=_quiet)
    assert counter.calls == expected_calls


def test_the_image_cache_changes_no_weight(tiny_shapes, tmp_path, monkeypatch):
    from bench import train as train_module

    samples = tiny_shapes.samples("train")[:12]
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-3)
    weights = []
    for cache in (0, 1 << 30):
        monkeypatch.setattr(train_module, "IMAGE_CACHE_BYTES", cache)
        model = _model(samples, "mdm-tiny", dropout=0.1)
        train(model, samples, cfg, tmp_path / str(cache), seed=3, log=_quiet)
        weights.append(model.module.state_dict())
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), key
