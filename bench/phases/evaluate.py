"""The eval phase: caption a split, score it in one call, and sweep decoding knobs if asked.

In a data-parallel job every rank runs this: each captions its shard of the split (every N-th image),
the shards are gathered, and rank 0 alone scores the whole split in one call (CIDEr's document
frequencies depend on the whole set: per-shard scores are never averaged) and writes the files.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from bench import distributed, files
from bench.metrics.quality import SWEEP_METRICS
from bench.plan import Job
from bench.results import read_json, write_json


def eval_phase(job: Job, task, captioner, log: Callable[[str], None]) -> dict[str, Any]:
    """Caption and score the eval split; the metrics row on rank 0, {} on the other ranks."""
    split = job.eval["split"]
    decoding = {**captioner.default_decoding(), **job.decoding}
    scores_file = job.dir / files.SCORES
    samples = task.samples(split)
    references = task.references(split)
    main = distributed.is_main()
    scores: dict[str, Any] = {}
    if distributed.broadcast(scores_file.is_file()):  # rank 0 decides, so every rank takes one path
        if main:
            scores = read_json(scores_file)
            if scores.get("intervals_pending"):  # the job stopped during the bootstrap: finish it
                scores = _resume_intervals(job, scores, references, log)
        log("scores found; not captioning again")
    else:
        log(f"caption {len(samples)} {split} images with {decoding}")
        captions, skipped, seconds = caption_shards(captioner, samples, decoding, job.eval, log)
        if main:
            scores = _score_split(job, task, captioner, captions, references, skipped, seconds, decoding, log)
    from bench.phases.latency import decoding_grid

    grid = decoding_grid(captioner, job.sweep, job.latency or {})
    if grid:
        _sweep(job, captioner, grid, samples, references, decoding, log)
    if not main:
        return {}
    bounds = {f"{m}_ci_{side}": iv[side] for m, iv in scores.get("intervals", {}).items() for side in ("low", "high")}
    return {
        **scores["corpus"], **bounds, "images_scored": scores["images_scored"],
        "images_skipped": len(scores["images_unreadable"]) + len(scores["images_missing"]),
        "caption_seconds": scores["caption_seconds"], "decode_cost": scores["decode_cost"],
    }


def _score_split(job: Job, task, captioner, captions: dict[str, str], references: dict[str, list[str]],
                 skipped: list[str], seconds: float, decoding: dict[str, Any],
                 log: Callable[[str], None]) -> dict[str, Any]:
    """Score every caption of the split in one call; write captions.json and scores.json."""
    from bench.metrics.quality import score_captions

    split = job.eval["split"]
    write_json(job.dir / files.CAPTIONS, [{"image_id": i, "caption": c} for i, c in captions.items()])
    quality = score_captions(captions, references)
    _add_extra_metrics(job, task, captions, references, quality)
    missing = task.missing(split)
    scores = {
        "intervals": {},
        "split": split, "decoding": decoding, "corpus": quality.corpus, "per_image": quality.per_image,
        "unavailable": quality.unavailable, "images_scored": len(captions),
        "images_unreadable": skipped, "images_missing": missing, "caption_seconds": seconds,
        "decode_cost": captioner.decode_cost(**decoding),
    }
    if quality.notes:
        scores["notes"] = quality.notes
    if job.eval.get("bootstrap", 0):
        scores["intervals_pending"] = True
    # The scores are the record: written before the bootstrap, which may take long or fail on its own.
    write_json(job.dir / files.SCORES, scores)
    log("scores: " + ", ".join(f"{k} {100 * v:.1f}" for k, v in quality.corpus.items()))
    for metric, reason in quality.unavailable.items():
        log(f"{metric} unavailable: {reason}")
    for note in quality.notes:
        log(note)
    if skipped or missing:
        log(f"skipped {len(skipped)} unreadable and {len(missing)} missing {split} image(s)")
    if scores.get("intervals_pending"):
        _add_intervals(job, scores, quality, log)
    return scores


def _add_extra_metrics(job: Job, task, captions: dict[str, str], references: dict[str, list[str]],
                       quality) -> None:
    """CLIPScore and CHAIR into `quality` when the suite's eval asks (eval.clip, eval.instances)."""
    if not (job.eval.get("clip") or job.eval.get("instances")):
        return
    from bench.metrics.extra import extra_scores

    extra = extra_scores(task, job.eval["split"], captions, references, job.eval)
    quality.corpus.update(extra.corpus)
    quality.unavailable.update(extra.unavailable)
    for image_id, values in extra.per_image.items():
        quality.per_image[image_id].update(values)


def _add_intervals(job: Job, scores: dict[str, Any], quality, log: Callable[[str], None]) -> None:
    """Bootstrap intervals into `scores` and scores.json (rewritten), with why a metric has none."""
    scores["intervals"], failed = _intervals(quality, job)
    scores.pop("intervals_pending", None)
    scores.pop("intervals_unavailable", None)
    if failed:
        scores["intervals_unavailable"] = failed
        for metric, reason in failed.items():
            log(f"no bootstrap interval for {metric}: {reason}")
    write_json(job.dir / files.SCORES, scores)


def _resume_intervals(job: Job, scores: dict[str, Any], references: dict[str, list[str]],
                      log: Callable[[str], None]) -> dict[str, Any]:
    """The bootstrap of a job stopped after scores.json was written: rescore captions.json (same
    texts, same scores) for the tokenised texts the bootstrap resamples, and add the intervals."""
    from bench.metrics.quality import score_captions

    captions = {c["image_id"]: c["caption"] for c in read_json(job.dir / files.CAPTIONS)}
    log("scores found without their bootstrap intervals; computing them")
    quality = score_captions(captions, references)
    for image_id, values in quality.per_image.items():  # CLIPScore, CHAIR, ... as recorded
        values.update({m: v for m, v in scores["per_image"].get(image_id, {}).items() if m not in values})
    quality.corpus.update({m: v for m, v in scores["corpus"].items() if m not in quality.corpus})
    _add_intervals(job, scores, quality, log)
    return scores


def _intervals(quality, job: Job) -> tuple[dict[str, Any], dict[str, str]]:
    """95% bootstrap intervals of every corpus metric (images resampled, corpus scores recomputed),
    and why a metric has none. All metrics share one set of resamples; should that call fail, each
    metric is bootstrapped alone so one failing metric costs only its own interval."""
    from dataclasses import asdict

    from bench.metrics.stats import bootstrap_ci

    def run(metrics: tuple[str, ...]) -> dict[str, Any]:
        intervals = bootstrap_ci(*quality.tokenized, metrics=metrics, per_image=quality.per_image,
                                 corpus=quality.corpus, n_resamples=job.eval["bootstrap"], seed=job.seed)
        return {metric: asdict(interval) for metric, interval in intervals.items()}

    try:
        return run(tuple(quality.corpus)), {}
    except Exception:  # noqa: BLE001 - find the metric at fault below; the others keep their intervals
        pass
    out: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for metric in quality.corpus:
        try:
            out.update(run((metric,)))
        except Exception as err:  # noqa: BLE001
            failed[metric] = f"{type(err).__name__}: {err}"
    return out, failed


def _sweep(job: Job, captioner, grid: dict[str, list[Any]], samples, references, decoding, log) -> None:
    """Quality at every setting of the model's decoding grid (bench/phases/latency.py: `decoding_grid`,
    the grid the latency phase times), with CIDEr's bootstrap interval and its resamples.

    The resamples draw images from one stream (seed 0) for every setting, seed and model of a task, so a
    front can be resampled as a whole and two models' fronts are paired on images (bench/report/cost.py).
    A setting equal to the default decoding reuses captions.json instead of captioning again.
    """
    from bench.metrics.quality import score_captions

    path = job.dir / files.SWEEP
    main = distributed.is_main()
    rows = distributed.broadcast(read_json(path) if main and path.is_file() else [])
    done = {(r["knob"], str(r["value"])) for r in rows}
    for knob, values in grid.items():
        for value in values:
            if (knob, str(value)) in done:
                continue
            setting = {**decoding, knob: value}
            if setting == decoding:  # the default decoding, captioned and scored already
                if not main:
                    continue
                captions = {c["image_id"]: c["caption"] for c in read_json(job.dir / files.CAPTIONS)}
                seconds = float(read_json(job.dir / files.SCORES).get("caption_seconds", 0.0))
            else:
                captions, _, seconds = caption_shards(captioner, samples, setting, job.eval, log)
                if not main:
                    continue
            quality = score_captions(captions, references, metrics=SWEEP_METRICS)
            row = {"knob": knob, "value": value, "decoding": setting, "corpus": quality.corpus,
                   "caption_seconds": seconds, "images": len(captions),
                   "decode_cost": captioner.decode_cost(**setting)}
            row.update(_cider_resamples(quality, int(job.eval.get("bootstrap", 0))))
            rows.append(row)
            write_json(path, rows)  # after every value: a killed sweep keeps what it measured
            log(f"sweep {knob}={value}: CIDEr {100 * quality.corpus['CIDEr']:.1f} ({seconds:.1f}s)")


def _cider_resamples(quality, n_resamples: int) -> dict[str, Any]:
    """CIDEr's 95% bootstrap interval and its resampled values (image draws of seed 0), or {}."""
    if n_resamples < 1 or "CIDEr" not in quality.corpus:
        return {}
    import numpy as np

    from bench.metrics.resampling import cider_resamples

    gts, res = quality.tokenized
    samples = cider_resamples(gts, res, n_resamples)
    low, high = np.quantile(samples, [0.025, 0.975])
    return {"intervals": {"CIDEr": {"low": float(low), "high": float(high), "confidence": 0.95,
                                    "n_resamples": n_resamples}},
            "CIDEr_resamples": [round(float(x), 6) for x in samples]}


class _Images:
    """Dataset of preprocessed test images; unreadable ones come back as None (skipped, counted)."""

    def __init__(self, captioner, samples: Sequence):
        self.captioner, self.samples = captioner, samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        from bench.samples import load

        return i, load(self.samples[i], self.captioner)


def _keep(items):
    return items


def caption_split(captioner, samples: Sequence, decoding: dict[str, Any], eval_cfg: dict[str, Any],
                  log: Callable[[str], None]) -> tuple[dict[str, str], list[str], float]:
    """Caption every readable image: (image_id -> caption, unreadable image ids, seconds)."""
    import torch
    from torch.utils.data import DataLoader

    loader = DataLoader(_Images(captioner, samples), batch_size=eval_cfg["batch_size"],
                        num_workers=eval_cfg.get("num_workers", 0), collate_fn=_keep,
                        pin_memory=captioner.device.type == "cuda")
    captions: dict[str, str] = {}
    unreadable: list[str] = []
    started = time.time()
    with torch.inference_mode():
        for items in loader:
            good = [(i, x) for i, x in items if x is not None]
            unreadable += [samples[i].image_id for i, x in items if x is None]
            if not good:
                continue
            pixels = torch.stack([x for _, x in good]).to(captioner.device)
            for (i, _), text in zip(good, captioner.caption(pixels, **decoding), strict=True):
                captions[samples[i].image_id] = text
    return captions, unreadable, time.time() - started


def caption_shards(captioner, samples: Sequence, decoding: dict[str, Any], eval_cfg: dict[str, Any],
                   log: Callable[[str], None]) -> tuple[dict[str, str], list[str], float]:
    """`caption_split` of the whole split, each rank captioning every N-th image; every rank gets the union.

    The union is put back in split order, so captions.json reads the same for any number of ranks;
    the seconds are the slowest shard's (the wall time of the parallel captioning). One process:
    `caption_split` itself.
    """
    if not distributed.active():
        return caption_split(captioner, samples, decoding, eval_cfg, log)
    shard = list(samples)[distributed.rank()::distributed.world_size()]
    parts = distributed.all_gather(caption_split(captioner, shard, decoding, eval_cfg, log))
    captions = {k: v for part in parts for k, v in part[0].items()}
    unreadable = {i for part in parts for i in part[1]}
    ordered = {s.image_id: captions[s.image_id] for s in samples if s.image_id in captions}
    return ordered, [s.image_id for s in samples if s.image_id in unreadable], max(p[2] for p in parts)
