"""Latency and throughput of any captioner, measured honestly.

- per-image latency at batch size 1: every image of a fixed set timed once per repeat, after warm-up,
  with the device synchronised around every timed call (CUDA work is asynchronous); the headline is the
  median over repeats of each repeat's median, with the repeats' spread (IQR, standard deviation);
- throughput (images/s) at several batch sizes, up to the largest that fits in memory;
- the work actually done per caption (`Captioner.generate`): network evaluations run and tokens
  generated, not the `max_new_tokens` upper bound;
- sweeps of one decoding setting at a time (a cost knob's values, a forced generated length);
- the environment (device name, the parameter and compute dtypes observed, torch/transformers versions).

The measurement never shares the machine with another job: the executors schedule it apart
(bench/executors/ray.py); this module only times.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch


def environment(device: torch.device | str, dtypes: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a latency figure depends on, to be stored next to it (`dtypes`: from `observed_dtypes`)."""
    import transformers

    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        from bench.cpuinfo import cpu_model

        name = f"{cpu_model()}, {torch.get_num_threads()} thread(s)"
    dtypes = dtypes or {"parameter_dtypes": [], "compute_dtypes": [], "autocast": None}
    return {"device": name, "device_type": device.type, "threads": torch.get_num_threads(),
            "dtype": "+".join(dtypes["compute_dtypes"] or dtypes["parameter_dtypes"]) or "none", **dtypes,
            "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def observed_dtypes(captioner, call: Callable[[], Any]) -> dict[str, Any]:
    """The dtypes a captioner really runs in, seen during one `call`.

    Parameters' dtypes, and the output dtype of every layer that holds parameters (what the matmuls
    produce: float16 under autocast even when the weights are float32). Non-neural captioners: empty.
    """
    try:
        module = captioner.module if captioner.trainable and captioner.module_ready() else None
    except NotImplementedError:
        module = None
    if module is None:
        call()
        return {"parameter_dtypes": [], "compute_dtypes": [], "autocast": None}
    seen: set[str] = set()

    def record(_module, _inputs, output) -> None:
        first = output[0] if isinstance(output, tuple | list) and output else output
        if isinstance(first, torch.Tensor) and first.is_floating_point():
            seen.add(_name(first.dtype))

    layers = [m for m in module.modules() if next(m.parameters(recurse=False), None) is not None]
    handles = [m.register_forward_hook(record) for m in layers]
    try:
        call()
    finally:
        for h in handles:
            h.remove()
    device = captioner.device.type
    autocast = _name(torch.get_autocast_dtype(device)) if torch.is_autocast_enabled(device) else None
    return {"parameter_dtypes": sorted({_name(p.dtype) for p in module.parameters()}),
            "compute_dtypes": sorted(seen), "autocast": autocast}


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


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, interquartile range and standard deviation of a few repeats (0 spread for one)."""
    if len(values) == 1:
        return {"median": values[0], "iqr": 0.0, "std": 0.0}
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {"median": statistics.median(values), "iqr": q3 - q1, "std": statistics.stdev(values)}


def _mean_or_none(values: Sequence[float] | None) -> float | None:
    return None if not values else statistics.fmean(values)


def batch1_latency(captioner, pixels: torch.Tensor, decoding: dict[str, Any], warmup: int = 1,
                   repeats: int = 1) -> dict[str, Any]:
    """Per-image latency at batch size 1 over every image of `pixels` (N, C, H, W), `repeats` times.

    `median_s` is the median over repeats of each repeat's median per-image time, with `iqr_s`/`std_s`
    its spread over repeats; `p90_s` pools every timed call. Tokens and network evaluations per caption
    are what `generate` reports for each image (the first repeat; decoding is deterministic).
    """
    device = captioner.device
    images = [p[None] for p in pixels.to(device)]
    generations: list[Any] = []

    def run(x: torch.Tensor) -> None:
        generations.append(captioner.generate(x, **decoding))

    per_repeat, pooled = [], []
    for r in range(repeats):
        times = time_calls(run, images, device, warmup if r == 0 else 0)
        per_repeat.append(statistics.median(times))
        pooled += times
    first = generations[warmup: warmup + len(images)]
    tokens = None if any(g.tokens is None for g in first) else [t for g in first for t in g.tokens]
    evals = None if any(g.network_evals is None for g in first) else [n for g in first for n in g.network_evals]
    s = spread(per_repeat)
    return {"median_s": s["median"], "iqr_s": s["iqr"], "std_s": s["std"], "repeats": repeats,
            "repeat_medians_s": per_repeat, "p90_s": _percentile(pooled, 0.9), "mean_s": statistics.fmean(pooled),
            "images": len(images), "network_evals": _mean_or_none(evals), "tokens": _mean_or_none(tokens),
            "network_evals_per_caption": evals, "tokens_per_caption": tokens,
            "captions": [c for g in first for c in g.captions]}


def throughput(captioner, pixels: torch.Tensor, decoding: dict[str, Any], batch_sizes: Sequence[int],
               warmup: int = 1) -> list[dict[str, Any]]:
    """Images per second at each batch size (images repeated to fill a batch); stops at out-of-memory."""
    device = captioner.device
    rows = []
    for size in batch_sizes:
        batch = pixels[torch.arange(size) % len(pixels)].to(device)
        try:
            seconds = min(time_calls(lambda x: captioner.generate(x, **decoding), [batch, batch], device, warmup))
        except torch.OutOfMemoryError:
            if device.type == "cuda":
                torch.cuda.empty_cache()
            rows.append({"batch_size": size, "error": "out of memory"})
            break
        rows.append({"batch_size": size, "seconds": seconds, "images_per_s": size / seconds})
    return rows


def latency_sweep(captioner, pixels: torch.Tensor, base: dict[str, Any], settings: Sequence[dict[str, Any]],
                  warmup: int = 1, repeats: int = 1, values: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    """Batch-1 latency for each decoding setting (each a dict of overrides on `base`); `values`: the
    swept value each setting stands for (the knob's value, or the forced length), stored as `value`."""
    rows = []
    for i, setting in enumerate(settings):
        decoding = {**base, **setting}
        row = {"setting": setting, **batch1_latency(captioner, pixels, decoding, warmup, repeats)}
        if values is not None:
            row["value"] = values[i]
        rows.append(row)
    return rows
