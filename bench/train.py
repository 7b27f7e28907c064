"""One training loop for every captioner.

AdamW with linear warm-up and a linear/cosine/constant schedule, mixed precision on GPU (bf16 where
supported, else fp16 with loss scaling), gradient accumulation, a checkpoint at the end of every epoch
(atomic), resume from the last checkpoint, progress with loss and ETA, and a budget in epochs and/or
minutes (whichever ends first).

Resume granularity is the epoch: a job killed mid-epoch restarts that epoch from the last checkpoint,
with the same data order (the shuffle of epoch e is seeded by (seed, e)), so an interrupted and an
uninterrupted run see the same batches.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from bench.api import Captioner, Sample
from bench.config import TrainConfig

CHECKPOINT = "checkpoint.pt"


@dataclass
class TrainReport:
    epochs_done: int
    steps: int
    seconds: float
    samples_seen: int
    epoch_losses: list[float] = field(default_factory=list)
    resumed_from_epoch: int = 0
    stopped_by: str = "epochs"  # epochs | minutes
    skipped_pairs: int = 0  # unreadable (image, caption) pairs, summed over epochs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CaptionPairs(Dataset):
    """(image, caption) pairs: every reference caption of every image is one sample."""

    def __init__(self, captioner: Captioner, samples: Sequence[Sample], captions_per_image: int | None):
        self.captioner = captioner
        self.samples = list(samples)
        self.pairs = [
            (i, caption)
            for i, s in enumerate(self.samples)
            for caption in s.references[: captions_per_image or len(s.references)]
        ]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int):
        i, caption = self.pairs[index]
        try:
            image = self.samples[i].load_image()
        except OSError:  # a corrupt image is skipped in collate, never a crash of the job
            return None
        return self.captioner.preprocess(image, train=True), caption


class _Collate:
    """Picklable collate (DataLoader workers) that drops unreadable images and counts them."""

    def __init__(self, captioner: Captioner):
        self.captioner = captioner

    def __call__(self, items):
        good = [it for it in items if it is not None]
        batch = self.captioner.collate([g[0] for g in good], [g[1] for g in good]) if good else None
        return batch, len(items) - len(good)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _autocast(device: torch.device, amp: str):
    if device.type != "cuda" or amp == "off":
        return None, None
    if amp == "bf16" or (amp == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16, None
    return torch.float16, torch.amp.GradScaler("cuda")


def _lr_lambda(cfg: TrainConfig, total_steps: int | None) -> Callable[[int], float]:
    warm = max(1, int(cfg.warmup * total_steps)) if total_steps else 1

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if total_steps is None or cfg.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warm) / max(1, total_steps - warm))
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        return max(0.0, 1.0 - progress)

    return factor


def _move(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train(
    captioner: Captioner,
    samples: Sequence[Sample],
    cfg: TrainConfig,
    workdir: Path,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> TrainReport:
    """Train `captioner.module` on the (image, caption) pairs of `samples`; resumable from `workdir`.

    `captioner.prepare(samples)` must have run (it builds tokenizers and the network).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    device = captioner.device
    seed_everything(seed)
    dataset = CaptionPairs(captioner, samples, cfg.captions_per_image)
    if len(dataset) == 0:
        raise ValueError("training split has no (image, caption) pairs")
    module = captioner.module
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    batches_per_epoch = math.ceil(len(dataset) / cfg.batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / cfg.grad_accum)
    total_steps = math.ceil(steps_per_epoch * cfg.epochs) if cfg.epochs else None
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg, total_steps))
    amp_dtype, scaler = _autocast(device, cfg.amp)

    report = TrainReport(0, 0, 0.0, 0)
    ckpt_path = workdir / CHECKPOINT
    if ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        module.load_state_dict(state["module"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        report = TrainReport(**state["report"])
        report.resumed_from_epoch = report.epochs_done
        log(f"resuming from epoch {report.epochs_done} ({ckpt_path})")

    max_epochs = math.ceil(cfg.epochs) if cfg.epochs else sys.maxsize
    deadline = time.monotonic() + cfg.minutes * 60 - report.seconds if cfg.minutes else None
    interactive = sys.stderr.isatty()
    module.train()
    while report.epochs_done < max_epochs and report.stopped_by != "minutes":
        epoch = report.epochs_done
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, generator=generator,
                            num_workers=cfg.num_workers, collate_fn=_Collate(captioner),
                            persistent_workers=False, pin_memory=device.type == "cuda")
        # A fractional epoch budget (e.g. 2.5) trains the last epoch partially.
        limit = batches_per_epoch
        if cfg.epochs and epoch + 1 > cfg.epochs:
            limit = max(1, int(batches_per_epoch * (cfg.epochs - epoch)))
        started, loss_sum, loss_n, last_log = time.monotonic(), 0.0, 0, time.monotonic()
        bar = _progress(limit, f"epoch {epoch + 1}/{max_epochs if cfg.epochs else '?'}", interactive)
        for b, (batch, skipped) in enumerate(loader):
            if b >= limit:
                break
            report.skipped_pairs += skipped
            if batch is None:
                continue
            batch = _move(batch, device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                loss = captioner.training_loss(batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss {loss.item()} at epoch {epoch + 1}, batch {b}")
            scaled = loss / cfg.grad_accum
            (scaler.scale(scaled) if scaler else scaled).backward()
            if (b + 1) % cfg.grad_accum == 0 or b + 1 == limit:
                if scaler:
                    scaler.unscale_(optimizer)
                if cfg.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                if scaler:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                report.steps += 1
            loss_sum += loss.item()
            loss_n += 1
            report.samples_seen += len(next(iter(batch.values())))
            now = time.monotonic()
            eta = (now - started) / (b + 1) * (limit - b - 1)
            if bar is not None:
                bar.set_postfix(loss=f"{loss_sum / loss_n:.3f}")
                bar.update(1)
            elif now - last_log > 30:
                log(f"epoch {epoch + 1} batch {b + 1}/{limit} loss {loss_sum / loss_n:.4f} eta {eta:.0f}s")
                last_log = now
            if deadline is not None and now > deadline:
                report.stopped_by = "minutes"
                break
        if bar is not None:
            bar.close()
        report.epochs_done += 1
        report.seconds += time.monotonic() - started
        report.epoch_losses.append(loss_sum / max(1, loss_n))
        log(f"epoch {report.epochs_done}: loss {report.epoch_losses[-1]:.4f} "
            f"({time.monotonic() - started:.0f}s)")
        _atomic_save({"module": module.state_dict(), "optimizer": optimizer.state_dict(),
                      "scheduler": scheduler.state_dict(), "report": report.to_dict()}, ckpt_path)
    module.eval()
    return report


def _progress(total: int, desc: str, interactive: bool):
    if not interactive:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)
