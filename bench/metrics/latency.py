"""Latency and throughput of any captioner, measured honestly.

- per-image latency at batch size 1: median and p90 over a fixed image set, after warm-up, with the
  device synchronised around every timed call (CUDA work is asynchronous);
- throughput (images/s) at several batch sizes, up to the largest that fits in memory;
- network evaluations per caption (`decode_cost`) next to every figure;
- sweeps of one decoding knob (diffusion steps, beam size, forced generated length);
- the environment (device name, dtype, torch/transformers versions) recorded with every table.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch


def environment(device: torch.device | str, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """What a latency figure depends on, to be stored next to it."""
    import transformers

    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} thread(s)"
    return {"device": name, "device_type": device.type, "dtype": str(dtype).removeprefix("torch."),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def time_calls(fn: Callable[[torch.Tensor], Any], batches: Sequence[torch.Tensor], device: torch.device,
               warmup: int = 1) -> list[float]:
    """Seconds of each call of `fn` on each batch, after `warmup` untimed calls on the first batch."""
    for _ in range(warmup):
        fn(batches[0])
    _sync(device)
    times = []
    for batch in batches:
        _sync(device)
        started = time.perf_counter()
        fn(batch)
        _sync(device)
        times.append(time.perf_counter() - started)
    return times


def batch1_latency(captioner, pixels: torch.Tensor, decoding: dict[str, Any], warmup: int = 1) -> dict[str, float]:
    """Per-image latency at batch size 1 over every image of `pixels` (N, C, H, W)."""
    device = captioner.device
    pixels = pixels.to(device)
    times = time_calls(lambda x: captioner.caption(x, **decoding), [p[None] for p in pixels], device, warmup)
    return {"median_s": statistics.median(times), "p90_s": _percentile(times, 0.9),
            "mean_s": statistics.fmean(times), "images": len(times),
            "network_evals": captioner.decode_cost(**decoding)}


def throughput(captioner, pixels: torch.Tensor, decoding: dict[str, Any], batch_sizes: Sequence[int],
               warmup: int = 1) -> list[dict[str, Any]]:
    """Images per second at each batch size (images repeated to fill a batch); stops at out-of-memory."""
    device = captioner.device
    rows = []
    for size in batch_sizes:
        batch = pixels[torch.arange(size) % len(pixels)].to(device)
        try:
            seconds = min(time_calls(lambda x: captioner.caption(x, **decoding), [batch, batch], device, warmup))
        except torch.OutOfMemoryError:
            if device.type == "cuda":
                torch.cuda.empty_cache()
            rows.append({"batch_size": size, "error": "out of memory"})
            break
        rows.append({"batch_size": size, "seconds": seconds, "images_per_s": size / seconds})
    return rows


def latency_sweep(captioner, pixels: torch.Tensor, base: dict[str, Any], settings: Sequence[dict[str, Any]],
                  warmup: int = 1) -> list[dict[str, Any]]:
    """Batch-1 latency for each decoding setting (each a dict of knob overrides on `base`)."""
    rows = []
    for setting in settings:
        decoding = {**base, **setting}
        rows.append({"setting": setting, **batch1_latency(captioner, pixels, decoding, warmup)})
    return rows
