"""Latency of LaDiC's sampler: the optimized loop next to the released code's structure, in one run.

For each number of steps both modes caption the same images with the same seed: "reference" re-runs
the image encoder inside every network call and makes separate conditional and unconditional
forwards (as the released code), "optimized" encodes each image once, computes the cross-attention
keys/values once and batches the two guidance passes. The table reports seconds per image, network
evaluations per caption, the speed-up, and whether both modes produced identical captions.

Untrained weights are enough to time the network (`pretrained=False` builds the published
architecture with random weights, so ladic-base can be timed offline).
"""

from __future__ import annotations

import time
from typing import Any

import torch

MODES = ("optimized", "reference")


def _build(variant: str, device: str, pretrained: bool):
    from models.ladic.captioner import LaDiCCaptioner

    model = LaDiCCaptioner(LaDiCCaptioner.variant_config(variant, pretrained=pretrained))
    model.build()
    model.to(device)
    model.module.eval()
    return model


def _timed_captions(model, images: torch.Tensor, batch_size: int, mode: str,
                    decoding: dict[str, Any]) -> tuple[float, list[str]]:
    device = model.device
    captions: list[str] = []
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(0, len(images), batch_size):
        captions += model.caption(images[i: i + batch_size].to(device), mode=mode, **decoding)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, captions


def compare_latency(variant: str, steps: list[int], device: str = "cpu", batch_size: int = 1,
                    n_images: int = 4, warmup: int = 1, pretrained: bool = False, seed: int = 0,
                    model: Any = None, dtype: str = "fp32", stack: str = "eager",
                    **decoding: Any) -> list[dict[str, Any]]:
    """Time both sampling modes at each step count; one row per (steps, mode).

    Row keys: variant, device, steps, mode, batch_size, images, seconds_per_image, evaluations
    (network evaluations per caption), speedup (reference time / optimized time, on both rows),
    identical (both modes gave the same captions), dtype and stack. `decoding` overrides the model's
    defaults (guidance, back_and_refine, mbr); `model` reuses an already built captioner. `dtype` and
    `stack` are the inference stack (models/ladic/stack.py; the reference mode runs its own loop, eager,
    in that dtype); an unsupported one is a ValueError before anything is built or timed.
    """
    from models.ladic.captioner import LaDiCCaptioner

    LaDiCCaptioner.check_stack(dtype, stack)
    model = model if model is not None else _build(variant, device, pretrained)
    model.set_stack(dtype, stack)
    size = model.config.image_size
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(n_images, 3, size, size, generator=generator)
    settings = {**model.default_decoding(), **decoding}
    for _ in range(warmup):  # first calls pay for allocations and kernel selection: one cheap pass
        for mode in MODES:
            _timed_captions(model, images[:batch_size], batch_size, mode, {**settings, "steps": 1})
    rows: list[dict[str, Any]] = []
    for n in steps:
        run = {**settings, "steps": n, "seed": seed}
        timings: dict[str, float] = {}
        outputs: dict[str, list[str]] = {}
        for mode in MODES:
            timings[mode], outputs[mode] = _timed_captions(model, images, batch_size, mode, run)
        identical = outputs["optimized"] == outputs["reference"]
        speedup = timings["reference"] / max(timings["optimized"], 1e-12)
        for mode in MODES:
            rows.append({
                "variant": variant, "device": str(model.device), "steps": n, "mode": mode,
                "batch_size": batch_size, "images": n_images,
                "seconds_per_image": timings[mode] / n_images,
                "evaluations": model.decode_cost(**{k: v for k, v in run.items() if k != "seed"}),
                "speedup": speedup, "identical": identical, "dtype": dtype, "stack": stack,
            })
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of `compare_latency` rows, one line per step count."""
    header = (f"{'steps':>5}  {'evals':>5}  {'optimized s/img':>15}  {'reference s/img':>15}  "
              f"{'speed-up':>8}  identical")
    lines = [header, "-" * len(header)]
    by_steps: dict[int, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_steps.setdefault(row["steps"], {})[row["mode"]] = row
    for n, pair in by_steps.items():
        opt, ref = pair.get("optimized"), pair.get("reference")
        if opt is None or ref is None:
            continue
        lines.append(f"{n:>5}  {opt['evaluations']:>5}  {opt['seconds_per_image']:>15.4f}  "
                     f"{ref['seconds_per_image']:>15.4f}  {opt['speedup']:>7.2f}x  "
                     f"{'yes' if opt['identical'] else 'NO'}")
    if rows:
        first = rows[0]
        lines.append(f"({first['variant']} on {first['device']}, {first.get('dtype', 'fp32')} "
                     f"{first.get('stack', 'eager')}, batch {first['batch_size']}, "
                     f"{first['images']} images; evals = network evaluations per caption)")
    return "\n".join(lines)
