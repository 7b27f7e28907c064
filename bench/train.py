"""One training loop for every captioner.

AdamW with linear warm-up and a linear/cosine/constant schedule, mixed precision on GPU (bf16 where
supported, else fp16 with loss scaling), gradient accumulation, a checkpoint at the end of every epoch
(atomic), resume from the last checkpoint, progress with loss and ETA, and a budget in epochs and/or
minutes (whichever ends first). Options as MDLM trains: gradient clipping to a global norm
(`grad_clip`), and an exponential moving average of the trainable weights (`ema`, a decay) updated
after every optimizer step, checkpointed beside the weights, and copied into the module when training
ends, so evaluation and the saved model use the averaged weights (buffers stay the live ones).

Resume granularity is the epoch: a job killed mid-epoch restarts that epoch from the last checkpoint,
and a resumed job is bit-identical to an uninterrupted one on the same machine. Every random state
training uses is either derived or checkpointed: the shuffle of epoch e, and the seeds of that epoch's
DataLoader workers (torch seeds their torch, `random` and numpy from the loader's generator), come from
a generator seeded by (seed, e); the global generators the main process draws from (torch CPU and
every CUDA device: dropout, LaDiC's timesteps and noise; numpy; python `random`: self-conditioning,
augmentation when num_workers is 0) and the AMP loss scaler are saved with each checkpoint and restored
on resume (each rank's own, in a data-parallel job).

Data parallel: when a torch.distributed process group is up (a Ray Train job, bench/executors/
ray_train.py), every rank draws the same seeded order and takes every N-th item of each global batch,
so N ranks together see exactly the batches one process sees. Each rank weights its shard's mean loss
by its share of the global batch, and the gradients are summed over the ranks before every optimizer
step: the update is the one-process update up to float rounding. The share is counted in the units
the loss averages over: `captioner.loss_weight(batch)` if the captioner has it (token-mean losses:
the number of target tokens), else the number of samples. Rank 0 alone writes checkpoints; every
rank resumes from them. Why not torch's DistributedDataParallel wrapper: captioners call their own
module inside `training_loss`, so a wrapper cannot be slotted in generically; parameters the loss does
not reach (ViT's pooler) would need `find_unused_parameters`; and an explicit all-reduce makes gradient
accumulation, uneven shards and an unreadable shard exact in one place. The cost is no overlap of
communication with the backward pass.
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from bench import distributed
from bench.api import Captioner, Sample
from bench.checkpoints import CHECKPOINT, PREVIOUS_CHECKPOINT, CheckpointError, load_checkpoint
from bench.checkpoints import atomic_save as _atomic_save
from bench.checkpoints import resume_state as _resume_state
from bench.config import TrainConfig
from bench.ema import EMA
from bench.train_data import CaptionPairs, CollatePairs, GlobalBatches


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


#: Memory for preprocessed training images kept between their captions and epochs (bytes).
IMAGE_CACHE_BYTES = 1 << 30


@dataclass
class _Step:
    """One global batch as every rank sees it after combining the shards."""

    loss: float  # the global batch's loss (mean in the loss's own units)
    scale: float  # this rank's weight in the global loss (1 in one process)
    samples: int  # pairs trained on, all ranks
    skipped: int  # unreadable pairs, all ranks
    over_time: bool  # rank 0's clock says the minutes budget is spent


def _combine(captioner: Captioner, batch: dict[str, Any] | None, loss: torch.Tensor | None, skipped: int,
             over_time: bool, device: torch.device) -> _Step:
    """Combine the ranks' shards of a batch with one all-reduce (none in one process)."""
    samples = len(next(iter(batch.values()))) if batch is not None else 0
    if not distributed.active():
        return _Step(loss.item() if loss is not None else 0.0, 1.0, samples, skipped, over_time)
    weigh = getattr(captioner, "loss_weight", None)
    weight = 0.0 if batch is None else float(weigh(batch) if weigh else samples)
    local = 0.0 if loss is None else weight * loss.item()
    stats = torch.tensor([weight, local, samples, skipped, float(over_time and distributed.is_main())],
                         dtype=torch.float64, device=device)
    total, loss_sum, n, bad, late = distributed.all_reduce_sum(stats).tolist()
    return _Step(loss_sum / total if total else 0.0, weight / total if total else 0.0, int(n), int(bad),
                 late > 0)


def _all_reduce_gradients(params: list[torch.nn.Parameter], device: torch.device) -> None:
    """Sum the gradients over the ranks (each rank's loss is already weighted by its share).

    A parameter with no gradient on any rank keeps none (AdamW then skips it, as in one process); one
    with a gradient somewhere gets zeros where it has none (a rank whose shard was unreadable).
    """
    import torch.distributed as dist

    has = distributed.all_reduce_sum(
        torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=device)).tolist()
    for p, some in zip(params, has, strict=True):
        if some and p.grad is None:
            p.grad = torch.zeros_like(p)
    works = [dist.all_reduce(p.grad, async_op=True) for p in params if p.grad is not None]
    for work in works:
        work.wait()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every global random state training draws from (restored by `set_rng_state`).

    Tensors and plain lists only, so a checkpoint loads with `torch.load(weights_only=True)`: numpy's
    key array becomes an int64 tensor, python's state tuple a list.
    """
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
            "python": [version, list(internal), gauss_next],
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if state["cuda"] and torch.cuda.is_available():
        if len(state["cuda"]) != torch.cuda.device_count():
            raise RuntimeError(f"checkpoint holds the random state of {len(state['cuda'])} CUDA device(s), "
                               f"this process sees {torch.cuda.device_count()}: resume on the same machine")
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _rank_rng_path(workdir: Path, rank: int) -> Path:
    return workdir / f"rng-rank{rank}.pt"


def _restore_rng(state: dict[str, Any], workdir: Path, rank: int, seed: int, epochs_done: int,
                 log: Callable[[str], None]) -> None:
    """Rank 0's state is in the checkpoint; another rank's in its own file, tagged with the epoch."""
    if rank == 0:
        set_rng_state(state["rng"])
        return
    path = _rank_rng_path(workdir, rank)
    try:
        saved = load_checkpoint(path, torch.device("cpu"), ("epochs_done", "rng")) if path.is_file() else None
    except CheckpointError as err:
        log(f"rank {rank}: {err}")
        saved = None
    if saved is not None and saved["epochs_done"] == epochs_done:
        set_rng_state(saved["rng"])
    else:  # deterministic, though not the uninterrupted run's draws
        log(f"rank {rank}: no random state saved for epoch {epochs_done}; reseeding")
        seed_everything(seed * 100_003 + epochs_done * 1_009 + rank)


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


def train(
    captioner: Captioner,
    samples: Sequence[Sample],
    cfg: TrainConfig,
    workdir: Path,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> TrainReport:
    """Train `captioner.module` on the (image, caption) pairs of `samples`; resumable from `workdir`.

    `captioner.prepare(samples)` must have run (it builds tokenizers and the network). Inside a process
    group, every rank calls this with the same arguments; counts and losses in the report are global.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    device = captioner.device
    rank, world = distributed.rank(), distributed.world_size()
    seed_everything(seed)
    dataset = CaptionPairs(captioner, samples, cfg.captions_per_image,
                           cache_bytes=IMAGE_CACHE_BYTES if cfg.num_workers == 0 else 0)
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
    state = _resume_state(workdir, device, log) if rank == 0 else None
    if distributed.broadcast(state is not None):  # rank 0 decides: every rank resumes, or none
        if state is None:  # another rank: rank 0 found a usable checkpoint and promoted it to ckpt_path
            state = load_checkpoint(ckpt_path, device)
        module.load_state_dict(state["module"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        report = TrainReport(**state["report"])
        _restore_rng(state, workdir, rank, seed, report.epochs_done, log)
        report.resumed_from_epoch = report.epochs_done
        log(f"resuming from epoch {report.epochs_done} ({ckpt_path})")
    distributed.broadcast_module(module)  # identical start on every rank, whatever each initialised
    ema = EMA(params, cfg.ema) if cfg.ema else None  # after the broadcast: the same start everywhere
    if ema is not None and state is not None:
        ema.load_state_dict(state.get("ema"), ckpt_path)

    max_epochs = math.ceil(cfg.epochs) if cfg.epochs else sys.maxsize
    deadline = time.monotonic() + cfg.minutes * 60 - report.seconds if cfg.minutes else None
    interactive = sys.stderr.isatty() and rank == 0
    module.train()
    while report.epochs_done < max_epochs and report.stopped_by != "minutes":
        epoch = report.epochs_done
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        batches = GlobalBatches(len(dataset), cfg.batch_size, generator, rank, world)
        loader = DataLoader(dataset, batch_sampler=batches, generator=generator,
                            num_workers=cfg.num_workers, collate_fn=CollatePairs(captioner),
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
            loss = None
            if batch is not None:
                batch = _move(batch, device)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    loss = captioner.training_loss(batch)
            step = _combine(captioner, batch, loss, skipped, deadline is not None and time.monotonic() > deadline,
                            device)
            report.skipped_pairs += step.skipped
            if step.samples == 0:  # the whole batch was unreadable, on every rank
                continue
            if not math.isfinite(step.loss):
                raise FloatingPointError(f"non-finite loss {step.loss} at epoch {epoch + 1}, batch {b}")
            if loss is not None:
                scaled = loss * step.scale / cfg.grad_accum
                (scaler.scale(scaled) if scaler else scaled).backward()
            if (b + 1) % cfg.grad_accum == 0 or b + 1 == limit:
                if world > 1:
                    _all_reduce_gradients(params, device)
                if scaler:
                    scaler.unscale_(optimizer)
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                if scaler:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                if ema is not None:
                    ema.update()
                report.steps += 1
            loss_sum += step.loss
            loss_n += 1
            report.samples_seen += step.samples
            now = time.monotonic()
            eta = (now - started) / (b + 1) * (limit - b - 1)
            if bar is not None:
                bar.set_postfix(loss=f"{loss_sum / loss_n:.3f}")
                bar.update(1)
            elif now - last_log > 30:
                log(f"epoch {epoch + 1} batch {b + 1}/{limit} loss {loss_sum / loss_n:.4f} eta {eta:.0f}s")
                last_log = now
            if step.over_time:
                report.stopped_by = "minutes"
                break
        if bar is not None:
            bar.close()
        report.epochs_done += 1
        report.seconds += time.monotonic() - started
        report.epoch_losses.append(loss_sum / max(1, loss_n))
        log(f"epoch {report.epochs_done}: loss {report.epoch_losses[-1]:.4f} "
            f"({time.monotonic() - started:.0f}s{_time_left(report, cfg)})")
        distributed.broadcast_module(module, buffers_only=True)  # running statistics: rank 0's everywhere
        if rank == 0:
            _atomic_save({"module": module.state_dict(), "optimizer": optimizer.state_dict(),
                          "scheduler": scheduler.state_dict(), "report": report.to_dict(), "rng": rng_state(),
                          "scaler": scaler.state_dict() if scaler is not None else None,
                          "ema": ema.state_dict() if ema is not None else None}, ckpt_path,
                         keep=workdir / PREVIOUS_CHECKPOINT)
            log(f"checkpoint written: epoch {report.epochs_done} ({ckpt_path.name})")
        else:
            _atomic_save({"epochs_done": report.epochs_done, "rng": rng_state()}, _rank_rng_path(workdir, rank))
    if ema is not None:  # evaluation and the saved model use the averaged weights
        ema.copy_to_weights()
        log(f"weights replaced by their moving average (decay {cfg.ema})")
    module.eval()
    return report


def _progress(total: int, desc: str, interactive: bool):
    if not interactive:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


def _time_left(report: TrainReport, cfg: TrainConfig) -> str:
    """'; about N s left' from the mean epoch so far and the epochs (or minutes) still to go; '' at the end."""
    if not report.epochs_done or report.stopped_by == "minutes":
        return ""
    per_epoch = report.seconds / report.epochs_done
    left = per_epoch * max(0.0, cfg.epochs - report.epochs_done) if cfg.epochs else math.inf
    if cfg.minutes:
        left = min(left, max(0.0, cfg.minutes * 60 - report.seconds))
    if left <= 0 or math.isinf(left):
        return ""
    return f"; about {left / 60:.1f} min left" if left >= 120 else f"; about {left:.0f}s left"
