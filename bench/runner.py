"""Run one job inside a worker: build the task and the captioner, train, caption, score, write results.

Each phase's output is written atomically before the next starts, and a phase whose output exists is not
redone, so a job that died after training resumes at captioning. Any exception becomes a failed
result.json with the error and traceback; the caller's other jobs go on.
"""

from __future__ import annotations

import os
import shutil
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.plan import Job
from bench.results import RESULT, read_json, write_json

SWEEP_METRICS = ("BLEU-4", "ROUGE-L", "CIDEr")


class JobLog:
    """Prints with the job's label and appends to the job's log.txt."""

    def __init__(self, job: Job):
        self.prefix = f"[{job.label}/{job.task}/s{job.seed}]"
        self.path = job.dir / "log.txt"

    def __call__(self, message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {self.prefix} {message}"
        print(line, flush=True)
        with self.path.open("a") as f:
            f.write(line + "\n")


def pick_device(job: Job) -> str:
    import torch

    if job.gpus > 0:
        if not torch.cuda.is_available():
            raise RuntimeError(f"job asks for {job.gpus} GPU(s) but torch sees no CUDA device here")
        return "cuda"
    return "cpu"


def run_job(job: Job) -> dict[str, Any]:
    """Run every phase of `job`; always returns (and writes) a result dict, failed or ok."""
    job.dir.mkdir(parents=True, exist_ok=True)
    write_json(job.dir / "job.json", job.to_dict())
    log = JobLog(job)
    result: dict[str, Any] = {
        "key": job.key, "job_id": job.job_id, "suite": job.suite, "label": job.label,
        "model": job.model, "task": job.task, "seed": job.seed, "order": job.extra.get("order", 0),
        "phases": list(job.phases), "status": "running", "host": os.uname().nodename,
    }
    started = time.time()
    try:
        result.update(_run_phases(job, log))
        result["status"] = "ok"
    except BaseException as err:  # noqa: BLE001 - a job's failure is data, not a crash of the suite
        result.update(status="failed", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc())
        log(f"FAILED: {type(err).__name__}: {err}")
        if isinstance(err, KeyboardInterrupt | SystemExit):
            result["status"] = "interrupted"
            write_json(job.dir / RESULT, {**result, "seconds": time.time() - started})
            raise
    result["seconds"] = time.time() - started
    write_json(job.dir / RESULT, result)
    return result


def _run_phases(job: Job, log: Callable[[str], None]) -> dict[str, Any]:
    import torch

    from bench.registry import captioner_class, create_captioner, create_task
    from bench.train import seed_everything, train

    threads = int(job.train.get("threads") or max(1, round(job.cpus)))
    torch.set_num_threads(threads)
    device = pick_device(job)
    seed_everything(job.seed)
    task = create_task(job.task_class, **job.task_options)
    train_samples = task.samples("train")
    out: dict[str, Any] = {"device": device, "threads": threads}

    model_dir, train_file = job.dir / "model", job.dir / "train.json"
    cls = captioner_class(job.model)
    if "train" in job.phases and train_file.is_file() and model_dir.is_dir():
        log("trained model found; loading it")
        captioner = cls.load(model_dir).to(device)
        out["train"] = read_json(train_file)
    else:
        captioner = create_captioner(job.model, **job.overrides).to(device)
        log(f"prepare on {len(train_samples)} training images")
        prepared = time.time()
        captioner.prepare(train_samples)
        captioner.to(device)  # prepare may build the network
        report: dict[str, Any] = {"prepare_seconds": time.time() - prepared}
        if "train" in job.phases and captioner.trainable:
            from bench.config import TrainConfig

            cfg = TrainConfig.model_validate(job.train)
            log(f"train: {cfg.epochs} epoch(s), batch {cfg.batch_size}, lr {cfg.lr}, {device}")
            report.update(train(captioner, train_samples, cfg, job.dir / "train_state", job.seed, log).to_dict())
        if "train" in job.phases:
            captioner.save(model_dir)
            write_json(train_file, report)
            shutil.rmtree(job.dir / "train_state", ignore_errors=True)  # the saved model supersedes it
        out["train"] = report
    out["paradigm"] = cls.paradigm
    out["parameters"] = captioner.num_parameters()
    out["train_seconds"] = out["train"].get("seconds", 0.0) + out["train"].get("prepare_seconds", 0.0)

    if "eval" in job.phases:
        out["metrics"] = _eval_phase(job, task, captioner, log)
    return out


def _eval_phase(job: Job, task, captioner, log: Callable[[str], None]) -> dict[str, Any]:
    from bench.metrics.quality import score_captions

    split = job.eval["split"]
    decoding = {**captioner.default_decoding(), **job.decoding}
    scores_file, captions_file = job.dir / "scores.json", job.dir / "captions.json"
    samples = task.samples(split)
    references = task.references(split)
    if scores_file.is_file():
        scores = read_json(scores_file)
        log("scores found; not captioning again")
    else:
        log(f"caption {len(samples)} {split} images with {decoding}")
        captions, skipped, seconds = caption_split(captioner, samples, decoding, job.eval, log)
        write_json(captions_file, [{"image_id": i, "caption": c} for i, c in captions.items()])
        quality = score_captions(captions, references)
        missing = task.missing(split)
        scores = {
            "split": split, "decoding": decoding, "corpus": quality.corpus, "per_image": quality.per_image,
            "unavailable": quality.unavailable, "images_scored": len(captions),
            "images_unreadable": skipped, "images_missing": missing, "caption_seconds": seconds,
            "decode_cost": captioner.decode_cost(**decoding),
        }
        write_json(scores_file, scores)
        log("scores: " + ", ".join(f"{k} {100 * v:.1f}" for k, v in quality.corpus.items()))
        if skipped or missing:
            log(f"skipped {len(skipped)} unreadable and {len(missing)} missing {split} image(s)")
    if job.sweep:
        _sweep(job, captioner, samples, references, decoding, log)
    return {
        **scores["corpus"], "images_scored": scores["images_scored"],
        "images_skipped": len(scores["images_unreadable"]) + len(scores["images_missing"]),
        "caption_seconds": scores["caption_seconds"], "decode_cost": scores["decode_cost"],
    }


def _sweep(job: Job, captioner, samples, references, decoding, log) -> None:
    from bench.metrics.quality import score_captions

    path = job.dir / "sweep.json"
    rows = read_json(path) if path.is_file() else []
    done = {(r["knob"], str(r["value"])) for r in rows}
    for knob, values in job.sweep.items():
        for value in values:
            if (knob, str(value)) in done:
                continue
            setting = {**decoding, knob: value}
            captions, _, seconds = caption_split(captioner, samples, setting, job.eval, log)
            quality = score_captions(captions, references, metrics=SWEEP_METRICS)
            rows.append({"knob": knob, "value": value, "decoding": setting, "corpus": quality.corpus,
                         "caption_seconds": seconds, "images": len(captions),
                         "decode_cost": captioner.decode_cost(**setting)})
            write_json(path, rows)  # after every value: a killed sweep keeps what it measured
            log(f"sweep {knob}={value}: CIDEr {100 * quality.corpus['CIDEr']:.1f} ({seconds:.1f}s)")


class _Images:
    """Dataset of preprocessed test images; unreadable ones come back as None (skipped, counted)."""

    def __init__(self, captioner, samples: Sequence):
        self.captioner, self.samples = captioner, samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        try:
            return i, self.captioner.preprocess(self.samples[i].load_image(), train=False)
        except OSError:
            return i, None


def _keep(items):
    return items


def caption_split(captioner, samples: Sequence, decoding: dict[str, Any], eval_cfg: dict[str, Any],
                  log: Callable[[str], None]) -> tuple[dict[str, str], list[str], float]:
    """Caption every readable image: (image_id -> caption, unreadable image ids, seconds)."""
    import torch
    from torch.utils.data import DataLoader

    loader = DataLoader(_Images(captioner, samples), batch_size=eval_cfg["batch_size"],
                        num_workers=eval_cfg.get("num_workers", 0), collate_fn=_keep)
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
