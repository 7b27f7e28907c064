"""The diversity phase: k captions per image from each of the captioner's own sampling methods, each
swept over its sampling temperature, so that diversity is read at matched quality.

A captioner declares the probe `sampling` and its `sampling_methods` (LaDiC: "seeds", k noise seeds;
the masked model: its samplers, MDLM's "ancestral" among them; autoregressive: "nucleus", top-p 0.9 at
temperature 1, and "beams", the top k beams as the deterministic baseline). For each method the first
`diversity.images` readable images of the eval split get k captions, measured by
bench/metrics/diversity.py (Div-1/2, mBLEU-4, Self-CIDEr, vocabulary, novel-caption rate, best-of-k and
mean-of-k CIDEr-D) with bootstrap intervals over images. A captioner without the probe (the references:
they retrieve, they do not sample) is recorded as unavailable.

The sweep (`diversity.temperatures`, `diversity.top_p`): a stochastic method runs at every temperature
(at its own top-p) and, when its `sampling_settings(method, k)` has a top-p, at every top-p at
temperature 1; a deterministic method (its settings say `do_sample: false`: beams) runs once and is
reported beside. A method whose `sample_captions` has no `temperature` parameter runs once, at its
default, and the reason is recorded under "unavailable" (never another knob in its place).

diversity.json holds, per method: the decoding passed and what the method overrides in it, and its
default point (temperature 1, its own top-p): captions, per-image values (for paired comparisons on the
same images), corpus values, intervals and seconds; and `sweep`: every point with its temperature and
top-p, corpus values, intervals and per-image values (bench/report/diversity.py matches models' curves
on them). The headline numbers go to result.json's metrics: `<metric>` for the first declared method's
default point and, when a model has several methods, `<metric>_<method>` for every method; result.json's
`curves` keep each method's points (corpus values) for figures.
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
DEFAULTS = {"images": 100, "k": 5, "batch_size": 25, "temperatures": [1.0], "top_p": []}
#: the per-image measures kept for every point of the sweep (the matched-quality comparison's inputs)
SWEPT = ("cider_mean_of_k", "cider_best_of_k", "div1", "div2", "mbleu4", "self_cider")


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
            _method(report, captioner, kept, pixels, method, cfg, job, decoding, references, training, log)
        except NotImplementedError as err:
            report["unavailable"][method] = str(err)
    write_json(path, report)
    return summary(report)


def points(captioner, method: str, cfg: dict[str, Any]) -> tuple[list[dict[str, float]], str | None]:
    """The sweep of one method: (temperature / top-p settings, the method's default first, temperature
    1 at its own top-p; why there is no sweep, or None). A deterministic method and one without a
    `temperature` parameter have one point, {} (the method as it is)."""
    import inspect

    settings = captioner.sampling_settings(method, cfg["k"]) if hasattr(captioner, "sampling_settings") else {}
    if settings and not settings.get("do_sample", True):
        return [{}], None  # deterministic (beams): reported beside the curves
    if "temperature" not in inspect.signature(captioner.sample_captions).parameters:
        return [{}], (f"{type(captioner).__name__}.sample_captions has no temperature parameter: "
                      f"{method!r} measured at its default only, no temperature sweep")
    sweep = [{"temperature": float(t)} for t in cfg["temperatures"] if float(t) != 1.0]
    if "top_p" in settings:
        sweep += [{"temperature": 1.0, "top_p": float(p)} for p in cfg["top_p"] if float(p) != settings["top_p"]]
    return [{"temperature": 1.0}, *sweep], None


def _method(report: dict[str, Any], captioner, kept, pixels, method: str, cfg: dict[str, Any], job: Job,
            decoding: dict[str, Any], references, training, log: Callable[[str], None]) -> None:
    """Every point of one method's sweep into report["methods"][method]."""
    settings = getattr(captioner, "sampling_settings", None)  # optional: what the method overrides
    overrides = settings(method, cfg["k"]) if settings else {}
    sweep, why = points(captioner, method, cfg)
    if why:
        report["unavailable"][f"{method} temperature sweep"] = why
    rows = []
    for point in sweep:
        samples, seconds = _sample(captioner, kept, pixels, method, cfg, job.seed, {**decoding, **point})
        measured = dm.measure(samples, references, training)
        default = point in ({}, {"temperature": 1.0})  # the method as it is: the first point
        row = {"temperature": point.get("temperature", overrides.get("temperature")),
               "top_p": point.get("top_p", overrides.get("top_p")), "default": default, "seconds": seconds,
               "corpus": measured["corpus"], "intervals": dm.bootstrap(measured, job.eval.get("bootstrap", 0), job.seed),
               "per_image": {i: {m: v[m] for m in SWEPT} for i, v in measured["per_image"].items()}}
        rows.append(row)
        if default:
            report["methods"][method] = {
                "search": SEARCH.get(method, f"{method!r} as the captioner defines it"), "decoding": decoding,
                "overrides": overrides, "deterministic": bool(overrides) and not overrides.get("do_sample", True),
                "corpus": measured["corpus"], "intervals": row["intervals"],
                "per_image": measured["per_image"], "captions": samples}
        corpus = measured["corpus"]
        log(f"diversity {method} {point or 'default'}: k={cfg['k']} on {len(kept)} images in {seconds:.1f}s: "
            f"Div-1 {corpus['div1']:.3f}, mBLEU-4 {corpus['mbleu4']:.3f}, Self-CIDEr {corpus['self_cider']:.3f}, "
            f"CIDEr mean/best of k {100 * corpus['cider_mean_of_k']:.1f}/{100 * corpus['cider_best_of_k']:.1f}")
    report["methods"][method].update(seconds=sum(r["seconds"] for r in rows), sweep=rows)


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
    curves = {method: [{"temperature": p["temperature"], "top_p": p["top_p"], "default": p["default"], **p["corpus"]}
                       for p in row.get("sweep", [])] for method, row in methods.items()}
    return {"metrics": metrics, "k": report.get("k"), "images": report.get("images", 0),
            "methods": {method: row["corpus"] for method, row in methods.items()}, "curves": curves,
            "seed": report.get("seed"), "unavailable": report.get("unavailable", {})}
