"""The latency phase: batch-1 latency with its spread, throughput, and latency against each cost knob.

What is swept is read from the captioner, never from its paradigm: every knob it declares with
`cost=True`, over the values of `decoding_grid` (the model's `decoding.sweep`, else the suite's
`latency.sweep`, else the knob's own `sweep`), and, when it declares the `forced_length` probe, a forced
generated length (`latency.lengths`, through `forced_length_decoding`: LaDiC's figure 2a). The eval
phase's quality sweep runs over the same `decoding_grid`, so every setting has both its CIDEr (with
its interval) and its batch-1 latency: one grid per model for the Pareto fronts (bench/metrics/front.py).

The executors run this phase apart from every other job's work (bench/executors/ray.py holds a whole
node for it), so the numbers are not those of a shared machine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bench import files
from bench.api import PROBE_FORCED_LENGTH
from bench.plan import Job
from bench.results import read_json, write_json

LENGTH = "length"  # the sweep of a forced generated length, beside the knobs' own names


def decoding_grid(captioner, model_sweep: dict[str, list[Any]] | None,
                  latency_cfg: dict[str, Any]) -> dict[str, list[Any]]:
    """The one grid of decoding settings of a model, knob -> values, used by the eval phase's quality
    sweep and by this phase alike: for every `cost=True` knob the model's `decoding.sweep` values, else
    the suite's `latency.sweep` values, else the knob's own `sweep`; then any other knob the model's
    `decoding.sweep` names (swept for quality only: it does not change the cost)."""
    model_sweep = model_sweep or {}
    chosen = latency_cfg.get("sweep") or {}
    grid: dict[str, list[Any]] = {}
    for knob in captioner.knobs:
        if knob.cost:
            values = list(model_sweep.get(knob.name) or chosen.get(knob.name) or knob.sweep)
            if values:
                grid[knob.name] = values
    for name, values in model_sweep.items():
        grid.setdefault(name, list(values))
    return grid


def sweep_settings(captioner, cfg: dict[str, Any],
                   model_sweep: dict[str, list[Any]] | None = None) -> dict[str, tuple[list[Any], list[dict[str, Any]]]]:
    """Sweep name -> (values, decoding overrides), from the captioner's declarations, the model's
    `decoding.sweep` and `cfg` (`decoding_grid`).

    A value the knob does not accept is a ValueError naming `latency.sweep.<knob>`.
    """
    grid = decoding_grid(captioner, model_sweep, cfg)
    out: dict[str, tuple[list[Any], list[dict[str, Any]]]] = {}
    for knob in captioner.knobs:
        if not knob.cost:
            continue
        values = grid.get(knob.name, [])
        if values:
            settings = [captioner.check_decoding({knob.name: v}, f"latency.sweep.{knob.name}") for v in values]
            out[knob.name] = (values, settings)
    lengths = list(cfg.get("lengths") or [])
    if PROBE_FORCED_LENGTH in captioner.probes and lengths:
        out[LENGTH] = (lengths, [captioner.forced_length_decoding(n) for n in lengths])
    return out


@contextmanager
def inference_stack(captioner, cfg: dict[str, Any]) -> Iterator[None]:
    """The captioner under `latency.dtype` / `latency.stack` (an unsupported one is a ValueError naming
    the captioner and what it supports), put back to fp32 eager afterwards for the phases that follow."""
    captioner.set_stack(cfg.get("dtype", "fp32"), cfg.get("stack", "eager"))
    try:
        yield
    finally:
        captioner.set_stack("fp32", "eager")


def latency_phase(job: Job, task, captioner, log: Callable[[str], None]) -> dict[str, Any]:
    import torch

    from bench import samples as images
    from bench.metrics.latency import batch1_latency, environment, latency_sweep, observed_dtypes, throughput

    path = job.dir / files.LATENCY
    if path.is_file():
        log("latency found; not measuring again")
        return headline(read_json(path))
    cfg = job.latency
    kept, pixels, skipped = images.readable(task.samples(job.eval["split"]), captioner, cfg["images"])
    if pixels is None:
        raise RuntimeError(f"latency: no readable image in the {job.eval['split']} split of {job.task}")
    decoding = {**captioner.default_decoding(), **job.decoding}
    repeats, warmup = int(cfg.get("repeats", 1)), cfg["warmup"]
    sweeps = sweep_settings(captioner, cfg, job.sweep)
    log(f"latency on {len(kept)} images x {repeats} repeats, batch sizes {cfg['batch_sizes']}, "
        f"sweeps {', '.join(sweeps) or 'none'}")
    with inference_stack(captioner, cfg), torch.inference_mode():
        dtypes = observed_dtypes(captioner, lambda: captioner.generate(pixels[:1].to(captioner.device), **decoding))
        report: dict[str, Any] = {
            "environment": environment(captioner.device, dtypes), "decoding": decoding,
            "images_skipped": list(skipped), "images": len(kept),
            "images_unreadable": list(skipped), "images_missing": task.missing(job.eval["split"]),
            "batch1": batch1_latency(captioner, pixels, decoding, warmup, repeats),
            "throughput": throughput(captioner, pixels, decoding, cfg["batch_sizes"], warmup),
            "knobs": {k.name: k.label or k.name for k in captioner.knobs if k.name in sweeps},
            "sweeps": {}, "stack": captioner.stack_record(),
        }
        for name, (values, settings) in sweeps.items():
            report["sweeps"][name] = latency_sweep(captioner, pixels, decoding, settings, warmup, repeats, values)
    write_json(path, report)
    b1 = report["batch1"]
    log(f"latency: median {1000 * b1['median_s']:.1f} ms/image at batch 1 (IQR {1000 * b1['iqr_s']:.1f} ms over "
        f"{repeats} repeats), {b1['network_evals']} network evals and {b1['tokens']} tokens per caption, "
        f"{report['environment']['dtype']}, stack {report['stack']['stack']}")
    return headline(report)


def headline(report: dict[str, Any]) -> dict[str, Any]:
    """The numbers of latency.json that go into result.json's metrics."""
    b1 = report["batch1"]
    best = max((r.get("images_per_s", 0.0) for r in report["throughput"]), default=0.0)
    out = {"latency_median_s": b1["median_s"], "latency_p90_s": b1["p90_s"],
           "throughput_images_per_s": best, "network_evals": b1["network_evals"],
           "device": report["environment"]["device"], "dtype": report["environment"].get("dtype", ""),
           "stack": report.get("stack", {}).get("stack", "eager")}
    for key, name in (("iqr_s", "latency_iqr_s"), ("std_s", "latency_std_s"), ("tokens", "tokens_per_caption")):
        if b1.get(key) is not None:
            out[name] = b1[key]
    return out
