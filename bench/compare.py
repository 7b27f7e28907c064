"""After the jobs: each model's mean over training seeds, and paired comparisons between models.

Run by `bench run` after its jobs and by `bench report`, from the result files only. For every task:

- seeds.{json,csv,md}: per model, each metric's mean and standard deviation over its seeds and the 95%
  two-level bootstrap interval (seeds, small-sample corrected, then the test images they share).
- comparisons.{json,csv,md}: paired two-level bootstrap tests on the same test images, with the
  difference, its unadjusted and its Holm-adjusted interval and a two-sided p-value, Holm-adjusted within
  its family (bench/paired.py: the pairs, the two families, the resample count, the engine).

A rerun whose inputs (texts, per-image scores, METEOR statistics, seeds, settings) have the
digest recorded in seeds.json and comparisons.json keeps them instead of resampling again.

Corpus metrics need the PTB-tokenised captions and references, which scores.json does not keep: they
are tokenised again here from captions.json and the task's references, with METEOR's per-image
statistics lines, and cached per job in `tokenized.json` (keyed by a hash of its captions and
references). The recomputed CIDEr must equal scores.json's, else the job is reported as inconsistent.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import files
from bench.paired import (  # noqa: F401 - the statistics live in bench/paired.py; re-exported
    ALPHA,
    CONFIDENCE,
    DEFAULT_PRIMARY,
    METRICS,
    N_RESAMPLES,
    PRIMARY,
    Model,
    Run,
    comparison_rows,
    format_p,
    pairs,
    resamples_for,
    verdict_text,
)
from bench.results import read_json, to_csv, to_markdown, write_atomic, write_json

CACHE = files.TOKENIZED
USABLE = ("ok", "partial")  # statuses whose scores stand (partial: a phase after eval failed)
CACHE_VERSION = 2  # 2: texts reduced to one line first (bench/metrics/ptb.py)
#: Bumped when what the comparisons compute changes, so a cached seeds.json / comparisons.json is redone.
RESULTS_VERSION = 3  # 2: one engine per task, seed-level correction, two Holm families, adjusted intervals;
# 3: no diversity tests (diversity is compared at matched quality, bench/report/diversity.py)
PAIRED_METHOD = ("paired two-level bootstrap (each model's training seeds, small-sample corrected, then the same "
                 "test images; corpus metrics recomputed per resample), two-sided p, Holm-adjusted within its "
                 "family (primary: the cross-paradigm tests of the declared quality metrics; secondary: the rest)")


def _hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def declared_trainable(model: str, result: dict[str, Any]) -> bool:
    """What the captioner declares; a name no longer registered falls back to whether it trained."""
    from bench.registry import captioner_class

    if "trainable" in result:  # a caption file scored with `bench score` declares it (bench/score.py)
        return bool(result["trainable"])
    try:
        return bool(captioner_class(model).trainable)
    except Exception:  # noqa: BLE001 - an unregistered plugin must not stop the comparison
        return float(result.get("train_seconds") or 0.0) > 0


def _tokenise(texts: dict[str, list[str]], what: str) -> dict[str, list[str]]:
    """PTB tokens exactly as the eval phase scored them (bench/metrics/ptb.py, English JVM locale)."""
    from bench.metrics.ptb import tokenize
    from bench.metrics.quality import english_jvm

    if not texts:
        return {}
    with english_jvm():
        return tokenize(texts, what)


def load_models(suite_dir: Path, results: Sequence[dict[str, Any]], jar=None,
                log: Callable[[str], None] = print) -> list[Model]:
    """The suite's scored models with tokenised texts and METEOR statistics (cached per job).

    `jar`: an open bench.metrics.meteor.MeteorJar for the statistics (None: no METEOR statistics).
    """
    from bench.registry import create_task

    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in sorted(results, key=lambda r: (int(r.get("order", 0)), int(r.get("seed", 0)))):
        if r.get("status") in USABLE and (suite_dir / str(r.get("job_id")) / files.SCORES).is_file():
            groups.setdefault((str(r["task"]), str(r["label"])), []).append(r)
    references: dict[tuple[str, str], tuple[dict, dict]] = {}  # (task, split) -> (raw, tokenised)
    pending: list[tuple[Model, dict[str, Any], dict[str, Any], dict[str, str], tuple[str, str]]] = []
    models = []
    for (task, label), members in groups.items():
        first = members[0]
        model = Model(task, label, str(first.get("paradigm", "")), declared_trainable(str(first.get("model")), first),
                      min(int(r.get("order", 0)) for r in members))
        for r in members:
            job_dir = suite_dir / str(r["job_id"])
            scores, job = read_json(job_dir / files.SCORES), read_json(job_dir / files.JOB)
            split = str(scores.get("split") or job["eval"]["split"])
            if (task, split) not in references:
                raw = create_task(job["task_class"], **job["task_options"]).references(split)
                references[task, split] = (raw, {})
            captions = {c["image_id"]: c["caption"] for c in read_json(job_dir / files.CAPTIONS)}
            pending.append((model, r, scores, captions, (task, split)))
        models.append(model)
    _fill(suite_dir, pending, references, jar, log)
    return models


def _fill(suite_dir: Path, pending: list, references: dict, jar, log: Callable[[str], None]) -> None:
    """Tokenise what no cache holds (one PTB call for everything), then METEOR statistics in one JVM."""
    needed = {key: sorted({i for m, r, s, c, k in pending if k == key for i in c}) for key in references}
    for key, ids in needed.items():
        raw, _ = references[key]
        lacking = [i for i in ids if not raw.get(i)]
        if lacking:
            raise ValueError(f"task {key[0]} {key[1]}: {len(lacking)} captioned image(s) have no references, "
                             f"e.g. {lacking[:3]}")
        references[key] = (raw, _tokenise({i: raw[i] for i in ids}, "reference"))
    todo, runs = [], []
    for model, result, scores, captions, key in pending:
        raw, gts = references[key]
        model.gts.update(gts)
        source = _hash({"captions": captions, "references": {i: raw[i] for i in captions}})
        path = suite_dir / str(result["job_id"]) / CACHE
        cached = read_json(path) if path.is_file() else {}
        run = Run(str(result["job_id"]), int(result.get("seed", 0)), {}, scores.get("per_image", {}),
                  scores.get("corpus", {}), None)
        if cached.get("version") == CACHE_VERSION and cached.get("source") == source:
            run.res, run.meteor = cached["res"], cached.get("meteor")
        else:
            todo.append((run, captions, key, source, path))
        model.runs.append(run)
        runs.append((model, run))
    if todo:
        log(f"compare: tokenising the captions of {len(todo)} job(s)")
        tokens = _tokenise({f"{n}\t{i}": [c] for n, (_, caps, *_rest) in enumerate(todo) for i, c in caps.items()},
                           "caption")
        for n, (run, captions, key, source, path) in enumerate(todo):
            run.res = {i: tokens[f"{n}\t{i}"] for i in captions}
            run.meteor = jar.stats(references[key][1], run.res) if jar is not None else None
            if run.meteor is not None:  # a cache without METEOR statistics would stay without them
                write_json(path, {"version": CACHE_VERSION, "source": source, "res": run.res,
                                  "meteor": run.meteor})
    for model, run in runs:
        _check_consistent(model, run)


def _meteor_jar():
    from contextlib import nullcontext

    from bench.metrics.quality import java_missing_reason

    return nullcontext(None) if java_missing_reason() else _LazyJar()


class _LazyJar:
    """The METEOR jar, started at its first use (a rerun that reuses everything never starts the JVM)."""

    def __init__(self):
        self._jar = None

    def __enter__(self) -> _LazyJar:
        return self

    def __exit__(self, *exc) -> None:
        if self._jar is not None:
            self._jar.__exit__(*exc)
            self._jar = None

    def _started(self):
        if self._jar is None:
            from bench.metrics.meteor import MeteorJar

            self._jar = MeteorJar().__enter__()
        return self._jar

    def stats(self, gts, res):
        return self._started().stats(gts, res)

    def score(self, stats):
        return self._started().score(stats)


def _check_consistent(model: Model, run: Run) -> None:
    """The texts re-tokenised here must score as the eval phase scored them (same CIDEr)."""
    from bench.metrics.stats import cider_d

    if PRIMARY not in run.corpus:
        return
    ours, _ = cider_d({i: model.gts[i] for i in run.res}, run.res)
    if not math.isclose(ours, run.corpus[PRIMARY], rel_tol=1e-6, abs_tol=1e-9):
        raise ValueError(f"{run.job_id}: captions.json and the task's references give CIDEr {ours:.6f}, "
                         f"scores.json says {run.corpus[PRIMARY]:.6f}: the captions or the dataset changed "
                         "since scoring; rerun the job (`bench run --force`)")


def _pct(x: float) -> float:
    return round(100 * x, 2)


def _interval(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "unbounded"
    return f"[{100 * low:+.1f}, {100 * high:+.1f}]"


def seed_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        row = {"task": r["task"], "model": r["model"], "paradigm": r["paradigm"],
               "seeds": " ".join(map(str, r["seeds"])), "images": r["images"]}
        for metric, v in r["metrics"].items():
            row[metric] = f"{100 * v['mean']:.1f} ± {100 * v['sd']:.1f} [{100 * v['low']:.1f}, {100 * v['high']:.1f}]"
        out.append(row)
    return out


def comparison_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        floor = r.get("p_floor")
        at_floor = floor is not None and r["p"] <= floor * (1 + 1e-9)
        out.append({"task": r["task"], "family": r.get("family", ""), "A": r["model_a"], "B": r["model_b"],
                    "metric": r["metric"], "A score": f"{100 * r['score_a']:.1f}",
                    "B score": f"{100 * r['score_b']:.1f}", "A - B": f"{100 * r['delta']:+.1f}",
                    "Holm-adjusted interval": _interval(r.get("low_holm"), r.get("high_holm")),
                    "95% interval (unadjusted)": _interval(r["low"], r["high"]),
                    "p": format_p(r["p"], floor), "p (Holm)": format_p(r["p_holm"], r["p_holm"] if at_floor else None),
                    "verdict": verdict_text(r)})
    return out


def _flat(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    flat = []
    for r in rows:
        row = {k: v for k, v in r.items() if k != "metrics"}
        row["seeds"] = " ".join(map(str, r["seeds"]))
        for metric, v in r["metrics"].items():
            row.update({f"{metric}_mean": _pct(v["mean"]), f"{metric}_sd": _pct(v["sd"]),
                        f"{metric}_low": _pct(v["low"]), f"{metric}_high": _pct(v["high"])})
        flat.append(row)
    return flat


def inputs_digest(models: Sequence[Model], n_resamples: int, primary: Sequence[str]) -> str:
    """A digest of everything the comparisons are computed from (texts, per-image scores, METEOR
    statistics, seeds, labels, paradigms, settings and the code's RESULTS_VERSION)."""
    h = hashlib.sha256()
    h.update(json.dumps({"version": RESULTS_VERSION, "n_resamples": n_resamples, "primary": list(primary),
                         "confidence": CONFIDENCE, "alpha": ALPHA}, sort_keys=True).encode())
    for m in models:
        h.update(json.dumps([m.task, m.label, m.paradigm, m.trainable, m.order, m.gts], sort_keys=True).encode())
        for r in m.runs:
            h.update(json.dumps([r.job_id, r.seed, r.res, r.per_image, r.corpus, r.meteor],
                                sort_keys=True).encode())
    return h.hexdigest()


def _reusable(suite_dir: Path, digest: str) -> bool:
    """Whether seeds.json and comparisons.json (and their tables) were computed from these very inputs."""
    seeds_json, tests_json = suite_dir / files.SEEDS, suite_dir / files.COMPARISONS
    paths = [p.with_suffix(x) for p in (seeds_json, tests_json) for x in (".json", ".csv", ".md")]
    if not all(p.is_file() for p in paths):
        return False
    try:
        return all(read_json(p).get("inputs") == digest for p in (seeds_json, tests_json))
    except (OSError, ValueError):
        return False


def compare_suite(suite_dir: Path, results: Sequence[dict[str, Any]], n_resamples: int = N_RESAMPLES,
                  echo: Callable[[str], None] = print, primary: Sequence[str] | None = None,
                  workers: int | None = None) -> list[Path]:
    """Write seeds.* and comparisons.* under `suite_dir` from the suite's results; returns the paths.

    Deterministic: the same result files give the same bytes, whatever `workers` (processes; default the
    usable cores). A rerun whose inputs have the digest recorded in both files reuses them.
    `primary`: the quality metrics of the primary family (`compare.primary`; default DEFAULT_PRIMARY).
    """
    from bench.metrics.resampling import SEED_CORRECTION
    from bench.metrics.seed_stats import TWO_LEVEL_METHOD

    suite_dir = Path(suite_dir)
    primary = list(primary or DEFAULT_PRIMARY)
    seeds_json, tests_json = suite_dir / files.SEEDS, suite_dir / files.COMPARISONS
    paths = [seeds_json, seeds_json.with_suffix(".csv"), seeds_json.with_suffix(".md"), tests_json,
             tests_json.with_suffix(".csv"), tests_json.with_suffix(".md")]
    with _meteor_jar() as jar:
        models = load_models(suite_dir, results, jar, echo)
        if not models:
            return []
        digest = inputs_digest(models, n_resamples, primary)
        if _reusable(suite_dir, digest):
            echo("comparisons: inputs unchanged since the last run; seeds.* and comparisons.* kept")
            return paths
        seeds: list[dict[str, Any]] = []
        tests = comparison_rows(models, None if jar is None else jar.score, n_resamples, primary, workers, seeds)
    paired = resamples_for(models, n_resamples)
    meta = {"confidence": CONFIDENCE, "n_resamples": paired, "alpha": ALPHA, "inputs": digest}
    method = f"{TWO_LEVEL_METHOD}; {SEED_CORRECTION}"
    write_json(seeds_json, {**meta, "method": method, "models": seeds})
    write_json(tests_json, {**meta, "method": PAIRED_METHOD, "primary": primary,
                            "p_floor": 1 / (paired + 1), "tests": tests})
    seeds_md = to_markdown(seed_table(seeds)) + (
        f"\nMetrics x100: mean ± sd over seeds [{CONFIDENCE:.0%} interval: {method}; {paired} resamples].\n")
    tests_md = to_markdown(comparison_table(tests)) + (
        f"\nMetrics x100; {PAIRED_METHOD}; significant at {ALPHA} after adjustment. Holm-adjusted interval: "
        f"the symmetric bootstrap interval at the level of the test's Holm step (alpha x p / p_Holm): it "
        f"excludes 0 exactly when the test is significant; the 95% percentile interval beside it is "
        f"unadjusted. {paired} resamples: a p-value at the floor 1/{paired + 1} is printed as \"<= x\".\n")
    write_atomic(paths[1], to_csv(_flat(seeds)))
    write_atomic(paths[2], seeds_md)
    write_atomic(paths[4], to_csv([{**r, "seeds_a": " ".join(map(str, r["seeds_a"])),
                                    "seeds_b": " ".join(map(str, r["seeds_b"]))} for r in tests]))
    write_atomic(paths[5], tests_md)
    echo("\nmean ± sd over seeds:\n" + seeds_md)
    if tests:
        echo("paired comparisons:\n" + tests_md)
    return paths


def load_seeds(suite_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """seeds.json as (task, model label) -> row, or {} when absent."""
    path = Path(suite_dir) / files.SEEDS
    if not path.is_file():
        return {}
    return {(r["task"], r["model"]): r for r in read_json(path).get("models", [])}

