"""The diversity phase: k captions per image from each of the captioner's own sampling methods.

A captioner declares the probe `sampling` and its `sampling_methods` (diffusion: "seeds", k noise
seeds; autoregressive: "nucleus", top-p 0.9 at temperature 1, and "beams", the top k beams as the
deterministic baseline). For each method the first `diversity.images` readable images of the eval
split get k captions, measured by bench/metrics/diversity.py (Div-1/2, mBLEU-4, Self-CIDEr, vocabulary,
novel-caption rate, best-of-k and mean-of-k CIDEr-D) with bootstrap intervals over images. A captioner
without the probe (the references: they retrieve, they do not sample) is recorded as unavailable.

diversity.json holds, per method: the decoding passed and what the method overrides in it (when the
captioner says, via an optional `sampling_settings(method, k)`), the captions, per-image values (for paired
comparisons on the same images), corpus values, intervals and seconds. The headline numbers go to
result.json's metrics: `<metric>` for the first declared method (the model's own sampling) and, when a
model has several, `<metric>_<method>` for every method.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bench import files
from bench.api import PROBE_SAMPLING
from bench.metrics import diversity as dm
from bench.plan import Job
from bench.results import read_json, write_json

#: what each known method means, written beside the decoding it ran with.
SEARCH = {
    "seeds": "k noise seeds: seed, seed+1, ..., seed+k-1",
    "nucleus": "nucleus sampling: top-p 0.9, temperature 1, no top-k cut, k sequences per image",
    "beams": "the top k beams of a k-beam search (deterministic)",
}
DEFAULTS = {"images": 100, "k": 5, "batch_size": 25}


def diversity_phase(job: Job, task, captioner, log: Callable[[str], None]) -> dict[str, Any]:
    """Sample, measure and write diversity.json; returns the summary that goes into result.json."""
    path = job.dir / files.DIVERSITY
    if path.is_file():
        log("diversity found; not sampling again")
        return summary(read_json(path))
    cfg = {**DEFAULTS, **(job.diversity or {})}
    report: dict[str, Any] = {"split": job.eval["split"], "k": cfg["k"], "seed": job.seed, "methods": {},
                              "unavailable": {}}
    methods = tuple(captioner.sampling_methods) if PROBE_SAMPLING in captioner.probes else ()
    report["sampling_methods"] = list(methods)  # declared order (JSON files here sort their keys)
    if not methods:
        report["unavailable"]["sampling"] = (f"{type(captioner).__name__} does not declare the 'sampling' probe "
                                             "(no sampling: nothing to measure)")
        log("diversity: no sampling probe; recorded as unavailable")
        write_json(path, report)
        return summary(report)
    from bench.samples import readable

    split = job.eval["split"]
    kept, pixels, skipped = readable(task.samples(split), captioner, cfg["images"])
    report.update(images=len(kept), images_unreadable=skipped, images_missing=task.missing(split))
    if pixels is None:
        raise RuntimeError(f"diversity: no readable {split} image among those listed")
    references = task.references(split)
    training = [r for s in task.samples("train") for r in s.references]
    decoding = {**captioner.default_decoding(), **job.decoding}
    for method in methods:
        try:
            samples, seconds = _sample(captioner, kept, pixels, method, cfg, job.seed, decoding)
        except NotImplementedError as err:
            report["unavailable"][method] = str(err)
            continue
        measured = dm.measure(samples, references, training)
        settings = getattr(captioner, "sampling_settings", None)  # optional: what the method overrides
        report["methods"][method] = {
            "search": SEARCH.get(method, f"{method!r} as the captioner defines it"), "decoding": decoding,
            "overrides": settings(method, cfg["k"]) if settings else {},
            "seconds": seconds, "corpus": measured["corpus"],
            "intervals": dm.bootstrap(measured, job.eval.get("bootstrap", 0), job.seed),
            "per_image": measured["per_image"], "captions": samples,
        }
        corpus = measured["corpus"]
        log(f"diversity {method}: k={cfg['k']} on {len(kept)} images in {seconds:.1f}s: "
            f"Div-1 {corpus['div1']:.3f}, mBLEU-4 {corpus['mbleu4']:.3f}, Self-CIDEr {corpus['self_cider']:.3f}, "
            f"CIDEr mean/best of k {100 * corpus['cider_mean_of_k']:.1f}/{100 * corpus['cider_best_of_k']:.1f}")
    write_json(path, report)
    return summary(report)


def _sample(captioner, kept, pixels, method: str, cfg: dict[str, Any], seed: int,
            decoding: dict[str, Any]) -> tuple[dict[str, list[str]], float]:
    """image id -> its k captions, and the seconds sampling took. Every batch gets the job's seed: a
    diffusion caption depends on (image, seed) only, so the batch size changes nothing there."""
    import torch

    samples: dict[str, list[str]] = {}
    started = time.time()
    with torch.inference_mode():
        for start in range(0, len(kept), cfg["batch_size"]):
            batch = pixels[start:start + cfg["batch_size"]].to(captioner.device)
            rows = captioner.sample_captions(batch, cfg["k"], method, seed=seed, **decoding)
            if len(rows) != len(batch) or any(len(r) != cfg["k"] for r in rows):
                raise RuntimeError(f"{type(captioner).__name__}.sample_captions({method!r}) returned "
                                   f"{[len(r) for r in rows]} captions for {len(batch)} images, k={cfg['k']}")
            samples.update(zip((s.image_id for s in kept[start:start + len(batch)]), rows, strict=True))
    return samples, time.time() - started


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """What result.json keeps: headline metrics (first method unsuffixed, every method suffixed when
    there are several), the points per method for figures, and what was unavailable."""
    methods = {m: report["methods"][m] for m in report.get("sampling_methods", []) if m in report["methods"]}
    metrics: dict[str, float] = {}
    for n, (method, row) in enumerate(methods.items()):
        if n == 0:
            metrics.update(row["corpus"])
        if len(methods) > 1:
            metrics.update({f"{m}_{method}": v for m, v in row["corpus"].items()})
    if methods:
        metrics["diversity_seconds"] = sum(row["seconds"] for row in methods.values())
    return {"metrics": metrics, "k": report.get("k"), "images": report.get("images", 0),
            "methods": {method: row["corpus"] for method, row in methods.items()},
            "unavailable": report.get("unavailable", {})}
