"""The latency phase: batch-1 latency, throughput, and latency against each decoding knob.

Diffusion captioners are swept over sampling steps; autoregressive ones over beam size and over a
forced generated length (min = max new tokens = L, LaDiC's figure 2a). Quality at each step count
comes from the eval phase's sweep, so quality-vs-latency curves share one step grid.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.plan import Job
from bench.results import read_json, write_json


def sweep_settings(paradigm: str, cfg: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    if paradigm == "diffusion":
        return {"steps": [{"steps": s} for s in cfg["steps"]]}
    if paradigm == "autoregressive":
        return {"num_beams": [{"num_beams": b} for b in cfg["num_beams"]],
                "length": [{"min_new_tokens": n, "max_new_tokens": n} for n in cfg["lengths"]]}
    return {}


def latency_phase(job: Job, task, captioner, log: Callable[[str], None]) -> dict[str, Any]:
    import torch

    from bench.metrics.latency import batch1_latency, environment, latency_sweep, throughput

    path = job.dir / "latency.json"
    if path.is_file():
        log("latency found; not measuring again")
        return _headline(read_json(path))
    cfg = job.latency
    samples = task.samples(job.eval["split"])[: cfg["images"]]
    pixels = torch.stack([captioner.preprocess(s.load_image(), train=False) for s in samples])
    decoding = {**captioner.default_decoding(), **job.decoding}
    log(f"latency on {len(samples)} images, batch sizes {cfg['batch_sizes']}")
    with torch.inference_mode():
        report: dict[str, Any] = {
            "environment": environment(captioner.device), "decoding": decoding,
            "batch1": batch1_latency(captioner, pixels, decoding, cfg["warmup"]),
            "throughput": throughput(captioner, pixels, decoding, cfg["batch_sizes"], cfg["warmup"]),
            "sweeps": {},
        }
        for knob, settings in sweep_settings(captioner.paradigm, cfg).items():
            report["sweeps"][knob] = latency_sweep(captioner, pixels, decoding, settings, cfg["warmup"])
    write_json(path, report)
    b1 = report["batch1"]
    log(f"latency: median {1000 * b1['median_s']:.1f} ms/image at batch 1, p90 {1000 * b1['p90_s']:.1f} ms")
    return _headline(report)


def _headline(report: dict[str, Any]) -> dict[str, Any]:
    best = max((r.get("images_per_s", 0.0) for r in report["throughput"]), default=0.0)
    return {"latency_median_s": report["batch1"]["median_s"], "latency_p90_s": report["batch1"]["p90_s"],
            "throughput_images_per_s": best, "network_evals": report["batch1"]["network_evals"],
            "device": report["environment"]["device"]}
