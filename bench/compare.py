"""After the jobs: each model's mean over training seeds, and paired comparisons between models.

Run by `bench run` after its jobs and by `bench report`, from the result files only. For every task:

- seeds.{json,csv,md}: per model, each metric's mean and standard deviation over its seeds and the 95%
  two-level bootstrap interval (seeds, then the test images they share; bench/metrics/stats.py).
- comparisons.{json,csv,md}: paired two-level bootstrap tests on the same test images, with the
  difference, its interval and a two-sided p-value, Holm-adjusted over every test of the suite:
  * every model of one paradigm against every model of each other paradigm, among the learned models
    (`trainable` in their declaration); paradigms are the labels the models declare, ordered by the
    suite (the paradigm of the suite's first learned model is side A);
  * every learned model against the best trivial reference (the non-trainable model with the highest
    mean CIDEr on the task);
  * between learned models of different paradigms also diversity (Div-1, Div-2, mBLEU-4, Self-CIDEr of
    the k captions sampled per image by the model's own sampling method), when diversity.json exists.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import files
from bench.metrics.catalog import EXTRA_METRICS, higher_is_better
from bench.metrics.quality import TABLE_METRICS as METRICS
from bench.results import read_json, to_csv, to_markdown, write_atomic, write_json

PRIMARY = "CIDEr"  # ranks the trivial references
#: Per-image diversity measures of diversity.json compared between learned models, and whether higher
#: means more diverse (bench/metrics/diversity.py: mBLEU-4 is lower for more diverse captions).
DIVERSITY = ("div1", "div2", "mbleu4", "self_cider")  # directions: bench/metrics/catalog.py
N_RESAMPLES = 1000
CONFIDENCE = 0.95
ALPHA = 0.05
CACHE = files.TOKENIZED
USABLE = ("ok", "partial")  # statuses whose scores stand (partial: a phase after eval failed)
CACHE_VERSION = 2  # 2: texts reduced to one line first (bench/metrics/ptb.py)
PAIRED_METHOD = ("paired two-level bootstrap (each model's training seeds, then the same test images; corpus "
                 "metrics recomputed per resample), two-sided p, Holm-adjusted over the suite's tests")


@dataclass
class Run:
    """One finished job's scored captions, tokenised as pycocoevalcap scored them."""

    job_id: str
    seed: int
    res: dict[str, list[str]]  # image_id -> [PTB-tokenised caption]
    per_image: dict[str, dict[str, float]]
    corpus: dict[str, float]
    meteor: dict[str, list[float]] | None
    diversity: dict[str, dict[str, float]] | None = None  # per image, the model's own sampling method


@dataclass
class Model:
    """One labelled model on one task, with all of its seeds."""

    task: str
    label: str
    paradigm: str
    trainable: bool
    order: int
    gts: dict[str, list[str]] = field(repr=False, default_factory=dict)
    runs: list[Run] = field(default_factory=list)

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]

    def metrics(self) -> list[str]:
        return [m for m in (*METRICS, *EXTRA_METRICS) if all(m in r.corpus for r in self.runs)]


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
                  scores.get("corpus", {}), None, _diversity(suite_dir / str(result["job_id"])))
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


def _diversity(job_dir: Path) -> dict[str, dict[str, float]] | None:
    """Per-image diversity of the first sampling method the model declares (diversity.json), if any."""
    path = job_dir / files.DIVERSITY
    report = read_json(path) if path.is_file() else {}
    methods = [m for m in report.get("sampling_methods", []) if m in report.get("methods", {})]
    return report["methods"][methods[0]].get("per_image") if methods else None


def _meteor_jar():
    from contextlib import nullcontext

    from bench.metrics.meteor import MeteorJar
    from bench.metrics.quality import java_missing_reason

    return nullcontext(None) if java_missing_reason() else MeteorJar()


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


def _common(models: Sequence[Model]) -> list[str]:
    ids = set.intersection(*(set(r.res) for m in models for r in m.runs))
    return sorted(ids)


def _inputs(model: Model, ids: list[str]) -> tuple[list, list, list]:
    runs = [{i: r.res[i] for i in ids} for r in model.runs]
    per = [{i: r.per_image.get(i, {}) for i in ids} for r in model.runs]
    met = [None if r.meteor is None else {i: r.meteor[i] for i in ids} for r in model.runs]
    return runs, per, met


def seed_rows(models: Sequence[Model], meteor_score, n_resamples: int = N_RESAMPLES) -> list[dict[str, Any]]:
    """Per model: mean, sd over seeds and the two-level interval of every metric (fractions)."""
    from bench.metrics.stats import seed_bootstrap_ci

    rows = []
    for m in models:
        ids = _common([m])
        runs, per, met = _inputs(m, ids)
        cis = seed_bootstrap_ci({i: m.gts[i] for i in ids}, runs, m.metrics(), per, met, n_resamples=n_resamples,
                                confidence=CONFIDENCE, meteor_score=meteor_score)
        rows.append({"task": m.task, "model": m.label, "paradigm": m.paradigm, "learned": m.trainable,
                     "seeds": m.seeds, "images": len(ids),
                     "metrics": {k: {"mean": v.point, "sd": v.sd, "low": v.low, "high": v.high,
                                     "per_seed": list(v.seed_points)} for k, v in cis.items()}})
    return rows


def pairs(models: Sequence[Model]) -> list[tuple[str, Model, Model]]:
    """(kind, A, B) of one task's models: across declared paradigms (learned), and learned vs best reference."""
    learned = [m for m in models if m.trainable]
    # Grouped by the label each model declares, in suite order; no paradigm is special.
    groups: dict[str, list[Model]] = {}
    for m in sorted(learned, key=lambda m: m.order):
        groups.setdefault(m.paradigm, [])
    for m in learned:
        groups[m.paradigm].append(m)
    labels = list(groups)
    out = []
    for n, pa in enumerate(labels):
        for pb in labels[n + 1:]:
            out += [("paradigm", a, b) for a in groups[pa] for b in groups[pb]]
    references = [m for m in models if not m.trainable and PRIMARY in m.metrics()]
    if references:
        best = max(references, key=lambda m: sum(r.corpus[PRIMARY] for r in m.runs) / len(m.runs))
        out += [("reference", a, best) for a in learned]
    return out


def diversity_tests(a: Model, b: Model, n_resamples: int) -> dict[str, Any]:
    """Paired two-level tests of per-image diversity (seeds, then the images both sampled), or {}."""
    from bench.metrics.stats import seed_paired_test

    # The seeds that sampled (a suite may run the diversity phase on some seeds only: phase_seeds).
    runs_a = [r for r in a.runs if r.diversity is not None]
    runs_b = [r for r in b.runs if r.diversity is not None]
    if not runs_a or not runs_b:
        return {}
    ids = sorted(set.intersection(*(set(r.diversity) for r in (*runs_a, *runs_b))))
    metrics = [m for m in DIVERSITY if ids and all(m in r.diversity[ids[0]] for r in (*runs_a, *runs_b))]
    if not metrics:
        return {}
    # Per-image means need no texts: placeholders satisfy the shared checks.
    blank = {i: ["-"] for i in ids}
    tests = seed_paired_test(blank, [blank] * len(runs_a), [blank] * len(runs_b), metrics,
                             ([{i: r.diversity[i] for i in ids} for r in runs_a],
                              [{i: r.diversity[i] for i in ids} for r in runs_b]),
                             n_resamples=n_resamples, confidence=CONFIDENCE)
    return {f"diversity {m}": t for m, t in tests.items()}


def resamples_for(models: Sequence[Model], n_resamples: int = N_RESAMPLES) -> int:
    """At least `n_resamples`, and enough that a difference no resample reaches can still be significant
    after Holm's correction: a bootstrap p-value is at least 1 / (B + 1), so B >= 2 m / alpha for m tests
    (counted from above: every metric of every pair, diversity measures included) keeps the smallest
    attainable adjusted p at alpha / 2 or below. Rounded up to a thousand."""
    tests = 0
    for task in dict.fromkeys(m.task for m in models):
        for kind, a, b in pairs([m for m in models if m.task == task]):
            tests += len([x for x in a.metrics() if x in b.metrics()]) + (len(DIVERSITY) if kind == "paradigm" else 0)
    needed = math.ceil(2 * tests / ALPHA)
    return max(n_resamples, 1000 * math.ceil(needed / 1000))


def comparison_rows(models: Sequence[Model], meteor_score, n_resamples: int = N_RESAMPLES) -> list[dict[str, Any]]:
    """Every paired test of the suite (quality; diversity between learned models), Holm-adjusted together."""
    from bench.metrics.stats import holm, seed_paired_test

    rows = []
    n_resamples = resamples_for(models, n_resamples)
    for task in dict.fromkeys(m.task for m in models):
        for kind, a, b in pairs([m for m in models if m.task == task]):
            ids = _common([a, b])
            metrics = [x for x in a.metrics() if x in b.metrics()]
            (ra, pa, ma), (rb, pb, mb) = _inputs(a, ids), _inputs(b, ids)
            tests = seed_paired_test({i: a.gts[i] for i in ids}, ra, rb, metrics, (pa, pb), (ma, mb),
                                     n_resamples=n_resamples, confidence=CONFIDENCE, meteor_score=meteor_score)
            if kind == "paradigm":
                tests.update(diversity_tests(a, b, n_resamples))
            for metric, t in tests.items():
                rows.append({"task": task, "kind": kind, "model_a": a.label, "paradigm_a": a.paradigm,
                             "model_b": b.label, "paradigm_b": b.paradigm, "metric": metric,
                             "higher_is_better": higher_is_better(metric),
                             "score_a": t.score_a, "score_b": t.score_b, "delta": t.delta, "low": t.low,
                             "high": t.high, "p": t.p_value, "seeds_a": a.seeds, "seeds_b": b.seeds,
                             "images": t.n_images})
    for row, adjusted in zip(rows, holm([r["p"] for r in rows]), strict=True):
        row["p_holm"] = adjusted
        row["significant"] = adjusted <= ALPHA
    return rows


def verdict_text(row: dict[str, Any]) -> str:
    if not row["significant"]:
        return "no significant difference"
    a_ahead = (row["delta"] > 0) == row.get("higher_is_better", True)
    word = "more diverse" if row["metric"].startswith("diversity") else "better"
    return f"{row['model_a'] if a_ahead else row['model_b']} {word}"


def _pct(x: float) -> float:
    return round(100 * x, 2)


def _p(p: float) -> str:
    return f"{p:.3g}" if p >= 0.001 else f"{p:.1e}"


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
    return [{"task": r["task"], "A": r["model_a"], "B": r["model_b"], "metric": r["metric"],
             "A score": f"{100 * r['score_a']:.1f}", "B score": f"{100 * r['score_b']:.1f}",
             "A - B [95% CI]": f"{100 * r['delta']:+.1f} [{100 * r['low']:+.1f}, {100 * r['high']:+.1f}]",
             "p": _p(r["p"]), "p (Holm)": _p(r["p_holm"]), "verdict": verdict_text(r)} for r in rows]


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


def compare_suite(suite_dir: Path, results: Sequence[dict[str, Any]], n_resamples: int = N_RESAMPLES,
                  echo: Callable[[str], None] = print) -> list[Path]:
    """Write seeds.* and comparisons.* under `suite_dir` from the suite's results; returns the paths.

    Deterministic: the same result files give the same bytes.
    """
    from bench.metrics.stats import TWO_LEVEL_METHOD

    suite_dir = Path(suite_dir)
    with _meteor_jar() as jar:
        models = load_models(suite_dir, results, jar, echo)
        if not models:
            return []
        score = None if jar is None else jar.score
        seeds = seed_rows(models, score, n_resamples)
        tests = comparison_rows(models, score, n_resamples)
    meta = {"confidence": CONFIDENCE, "n_resamples": n_resamples, "alpha": ALPHA}
    paired = resamples_for(models, n_resamples)
    write_json(suite_dir / files.SEEDS, {**meta, "method": TWO_LEVEL_METHOD, "models": seeds})
    write_json(suite_dir / files.COMPARISONS, {**meta, "n_resamples": paired, "method": PAIRED_METHOD,
                                               "tests": tests})
    seeds_md = to_markdown(seed_table(seeds)) + (
        f"\nMetrics x100: mean ± sd over seeds [{CONFIDENCE:.0%} interval: {TWO_LEVEL_METHOD}].\n")
    tests_md = to_markdown(comparison_table(tests)) + (
        f"\nMetrics x100; {PAIRED_METHOD}; significant at {ALPHA} after adjustment; {paired} resamples "
        f"(enough for the smallest attainable adjusted p to be at most {ALPHA / 2:g}).\n")
    seeds_json, tests_json = suite_dir / files.SEEDS, suite_dir / files.COMPARISONS
    paths = [seeds_json, seeds_json.with_suffix(".csv"), seeds_json.with_suffix(".md"), tests_json,
             tests_json.with_suffix(".csv"), tests_json.with_suffix(".md")]
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

