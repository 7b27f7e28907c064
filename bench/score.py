"""`bench score`: caption files made elsewhere become rows of a suite, as if a job had captioned them.

Each valid file becomes a job-like folder under the suite (job.json, captions.json, scores.json with
per-image scores and bootstrap intervals, result.json), so the suite's summary, seeds table, paired
comparisons, report and verdict read it exactly as they read a generated job. Several files of one
label are several training seeds of one model. A row's identity (its folder's hash and its MLflow run)
holds the file's SHA-256, so another file under the same label is another row, and the same file
again is found finished.

A file that fails validation (bench/caption_files.py) is reported and nothing is written for it; the
other files go on. Images of the split a file has no caption for are counted, recorded in scores.json
(`images_uncaptioned`) and in the report's notes; every paired comparison is on the images both rows
captioned (bench/compare.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import files
from bench.caption_files import CaptionFile, CaptionFileError, load_caption_file
from bench.config import BenchConfig, ConfigError
from bench.plan import Job
from bench.results import collect, read_json, write_json

MODEL = "caption-file"  # the `model` of a scored row: no registered captioner made it
SOURCE = "caption-file"  # result.json's `source` marks a scored row
ORDER = 1_000_000  # scored rows follow the suite's planned rows in tables (suite order first)


@dataclass
class ScoreRequest:
    """What `bench score` was asked: files of one label, task and split."""

    suite: str
    task: str
    split: str
    label: str
    paradigm: str
    paths: list[Path]
    seeds: list[int] | None = None
    pretraining: str = "unknown"
    bootstrap: int = 1000
    extras: dict[str, Any] = field(default_factory=dict)  # clip model, instance annotations


def alternate_ids(task, split: str) -> dict[str, dict[str, str]]:
    """Other ids a tool may use for the split's images: a Karpathy file's `imgid` (lmms-eval's
    Flickr30k logs int(img_id), which may be either)."""
    split_file = getattr(task, "split_file", None)
    if split_file is None or not Path(split_file).is_file():
        return {}
    from tasks.karpathy import DatasetError, image_id_of, read_karpathy_json

    mapping = getattr(task, "split_map", {})
    try:
        entries = read_karpathy_json(Path(split_file))["images"]
    except DatasetError:  # not a Karpathy file (NoCaps' captions file): its ids are the only ones
        return {}
    table = {str(e["imgid"]): image_id_of(e) for e in entries if "imgid" in e and mapping.get(e.get("split")) == split}
    return {"Karpathy imgid": table} if table else {}


def _seeds(request: ScoreRequest) -> list[int]:
    seeds = request.seeds if request.seeds else list(range(len(request.paths)))
    if len(seeds) != len(request.paths):
        raise ConfigError(f"--seed given {len(seeds)} time(s) for {len(request.paths)} file(s): give one seed per "
                          "file, in the files' order, or none (seeds 0, 1, ...)")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seed values repeat ({seeds}): several files of one label are several seeds")
    return seeds


def make_job(cfg: BenchConfig, request: ScoreRequest, task: str, split: str, seed: int,
             caption_file: CaptionFile, results_dir: Path) -> Job:
    """The job-like identity of one scored file: the file's digest is in its hash."""
    task_class, task_options = cfg.task_options(request.task)
    return Job(suite=request.suite, model=MODEL, label=request.label, task=task, task_class=task_class,
               task_options=task_options, seed=seed, phases=("eval",),
               overrides={"file": caption_file.path.name, "sha256": caption_file.sha256,
                          "paradigm": request.paradigm, "extras": request.extras},
               train={}, eval={"split": split, "bootstrap": request.bootstrap}, decoding={}, sweep={},
               latency={}, errprop={}, cpus=1, gpus=0, results_dir=str(results_dir))


def score_request(cfg: BenchConfig, request: ScoreRequest, results_dir: Path, tracker,
                  echo: Callable[[str], None] = print) -> tuple[list[dict[str, Any]], list[str]]:
    """Validate every file, then score the valid ones into rows; (results written, errors of bad files)."""
    from bench.registry import create_task

    seeds = _seeds(request)
    task_class, task_options = cfg.task_options(request.task)
    task = create_task(task_class, **task_options)
    references = task.references(request.split)
    alternates = alternate_ids(task, request.split)
    errors, valid = [], []
    for path, seed in zip(request.paths, seeds, strict=True):
        try:
            valid.append((load_caption_file(Path(path), set(references), alternates), seed))
        except CaptionFileError as err:
            errors.append(str(err))
            echo(f"error: {err}")
    results = []
    for caption_file, seed in valid:
        if caption_file.id_kind != "image id":
            echo(f"{caption_file.path}: its ids are the split's {caption_file.id_kind}s")
        if caption_file.missing:
            echo(f"{caption_file.path}: {len(caption_file.missing)} of {len(references)} {request.split} image(s) "
                 "have no caption: comparisons use the images every compared row has")
        for task_name, split in _rows(task, request):
            job = make_job(cfg, request, task_name, split, seed, caption_file, results_dir)
            try:
                results.append(_score_row(job, task, caption_file, request, echo))
            except CaptionFileError as err:  # e.g. no caption in one NoCaps domain: the other rows stand
                echo(f"warning: {err}")
                continue
            tracker.log_job(job, results[-1])
    return results, errors


def _rows(task, request: ScoreRequest) -> list[tuple[str, str]]:
    """(row task name, split) of a request: the split, then the subsets the task declares (NoCaps'
    domains: tasks/nocaps.py), each its own task in the tables so it gets its own tests."""
    subsets = getattr(task, "subsets", None)
    extra = subsets(request.split) if callable(subsets) else {}
    return [(request.task, request.split), *((f"{request.task}:{name}", split) for name, split in extra.items())]


def _score_row(job: Job, task, caption_file: CaptionFile, request: ScoreRequest,
               echo: Callable[[str], None]) -> dict[str, Any]:
    """Score one file on one split into its folder (job.json, captions, scores, result); a finished
    folder of the same identity is read back."""
    from bench.metrics.extra import extra_scores
    from bench.metrics.quality import score_captions

    done = job.dir / files.RESULT
    if done.is_file():
        echo(f"{job.label} {job.task} seed {job.seed}: already scored ({job.dir.name})")
        return {**read_json(done), "scored_before": True}
    split = job.eval["split"]
    references = task.references(split)
    captions = {i: c for i, c in caption_file.captions.items() if i in references}
    if not captions:
        raise CaptionFileError(f"{caption_file.path}: no caption for any image of {job.task} {split}")
    write_json(job.dir / files.JOB, job.to_dict())
    write_json(job.dir / files.CAPTIONS, [{"image_id": i, "caption": c} for i, c in captions.items()])
    quality = score_captions(captions, references)
    extra = extra_scores(task, split, captions, references, request.extras)
    quality.corpus.update(extra.corpus)
    quality.unavailable.update(extra.unavailable)
    for image_id, values in extra.per_image.items():
        quality.per_image[image_id].update(values)
    intervals = _intervals(quality, request.bootstrap, job.seed)
    missing = sorted(set(references) - set(captions))
    scores = {"split": split, "corpus": quality.corpus, "per_image": quality.per_image,
              "unavailable": quality.unavailable, "intervals": intervals, "images_scored": len(captions),
              "images_unreadable": [], "images_missing": [], "images_uncaptioned": missing,
              "source": _source(caption_file), **({"notes": quality.notes} if quality.notes else {})}
    write_json(job.dir / files.SCORES, scores)
    for note in quality.notes:
        echo(f"{job.label} {job.task} seed {job.seed}: {note}")
    bounds = {f"{m}_ci_{side}": iv[side] for m, iv in intervals.items() for side in ("low", "high")}
    result = {"job_id": job.job_id, "key": job.key, "suite": job.suite, "model": MODEL, "label": job.label,
              "task": job.task, "seed": job.seed, "paradigm": request.paradigm, "status": "ok",
              "source": SOURCE, "trainable": True, "file": _source(caption_file),
              "model_info": {"pretraining": request.pretraining, "knobs": [], "paradigm": request.paradigm},
              "metrics": {**quality.corpus, **bounds, "images_scored": len(captions),
                          "images_uncaptioned": len(missing)}}
    write_json(done, result)  # last: it marks the row finished
    echo(f"{job.label} {job.task} seed {job.seed}: " + ", ".join(f"{k} {100 * v:.1f}" for k, v in quality.corpus.items()))
    return result


def _source(caption_file: CaptionFile) -> dict[str, str]:
    return {"file": caption_file.path.name, "sha256": caption_file.sha256, "format": caption_file.format,
            "ids": caption_file.id_kind}


def _intervals(quality, n_resamples: int, seed: int) -> dict[str, Any]:
    """95% bootstrap intervals over images of every metric scored (as the eval phase computes them)."""
    from dataclasses import asdict

    from bench.metrics.stats import bootstrap_ci

    if not n_resamples:
        return {}
    intervals = bootstrap_ci(*quality.tokenized, metrics=tuple(quality.corpus), per_image=quality.per_image,
                             corpus=quality.corpus, n_resamples=n_resamples, seed=seed)
    return {metric: asdict(interval) for metric, interval in intervals.items()}


def scored_results(suite_dir: Path) -> list[dict[str, Any]]:
    """The result.json of every scored row under a suite folder, ordered after the planned rows (scored
    labels by name, so the same folders give the same tables)."""
    rows = [r for r in collect(Path(suite_dir)) if r.get("source") == SOURCE]
    labels = sorted({str(r.get("label")) for r in rows})
    return [{**r, "order": ORDER + labels.index(str(r.get("label")))} for r in rows]


def suite_rows(cfg: BenchConfig, suite: str, suite_dir: Path) -> list[dict[str, Any]]:
    """Every finished row of a suite: its planned jobs' results, then the scored caption files."""
    from bench.plan import plan_suite

    keys = {job.key for job in plan_suite(cfg, suite)}
    return [*collect(suite_dir, keys), *scored_results(suite_dir)]


def run_score(cfg: BenchConfig, request: ScoreRequest, echo: Callable[[str], None] = print
              ) -> tuple[list[dict[str, Any]], list[str]]:
    """`bench score`: score the files into rows of the suite (under its lock), mirror them to MLflow,
    then rewrite the suite's summary, seeds, comparisons and report over every row."""
    from bench.lock import suite_lock
    from bench.results import write_summary
    from bench.tracking import make_tracker

    cfg.suite(request.suite)  # an unknown suite is a ConfigError naming the known ones
    results_dir = cfg.results_dir if cfg.results_dir.is_absolute() else Path.cwd() / cfg.results_dir
    suite_dir = results_dir / request.suite
    with suite_lock(suite_dir):
        tracker = make_tracker(cfg.tracking, results_dir, warn=echo)
        tracker.start(request.suite, {"score": {"task": request.task, "split": request.split,
                                                "label": request.label, "paradigm": request.paradigm,
                                                "files": [Path(p).name for p in request.paths]}},
                      {"command": "score"})
        status = "FAILED"
        try:
            written, errors = score_request(cfg, request, results_dir, tracker, echo)
            status = "FINISHED"
        finally:
            tracker.finish(status)
        rows = suite_rows(cfg, request.suite, suite_dir)
        if any(not r.get("scored_before") for r in written) and rows:
            _refresh(suite_dir, rows, echo)
            write_summary(suite_dir, rows)
    return written, errors


def _refresh(suite_dir: Path, rows: list[dict[str, Any]], echo: Callable[[str], None]) -> None:
    """Seeds, comparisons and report over every row; a failure there costs none of the scored rows."""
    try:
        from bench.compare import compare_suite

        compare_suite(suite_dir, rows, echo=echo)
    except Exception as err:  # noqa: BLE001 - the rows are written; `bench report` can retry
        echo(f"warning: paired comparisons not written: {type(err).__name__}: {err}")
    try:
        from bench.report import build_report

        build_report(suite_dir, rows)
    except Exception as err:  # noqa: BLE001
        echo(f"warning: report not written: {type(err).__name__}: {err}")


def score_command(args: Any) -> int:
    """`bench score`: the parsed arguments of bench/cli.py; exit 1 when any file was rejected."""
    from bench.config import load_config

    cfg = load_config(args.config, args.overrides)
    extras = {"clip": args.clip, "instances": [str(p.resolve()) for p in args.instances]}
    request = ScoreRequest(args.suite, args.task, args.split, args.label, args.paradigm, list(args.files),
                           args.seeds, args.pretraining, args.bootstrap, extras)
    written, errors = run_score(cfg, request)
    print(f"{len(written)} row(s) scored; {len(errors)} file(s) rejected")
    return 1 if errors else 0
