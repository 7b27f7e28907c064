"""One two-level bootstrap for every model of a task at once (the engine of bench/compare.py).

bench/metrics/stats.py and seed_stats.py define the statistics (corpus metrics recomputed per resample, seeds then images);
this module computes them for a whole suite in one pass, because the per-pair functions there redo the
shared work once per pair. Here:

- every model and seed on the task shares one stream of image draws (the design is crossed: all captioned
  the same images), so CIDEr-D's document frequencies and reference norms are computed once per resample
  for all hypothesis sets together, BLEU and per-image means are (R, n) x (n, k) products of per-image
  sufficient statistics, and seeds with identical captions are scored once;
- each model draws its own training seeds per resample (training runs of two models are not paired);
- resamples are cut into chunks of a fixed size with a random stream per chunk, so the result does not
  depend on how many processes score them; chunks are spread over a process pool;
- METEOR (exact: summed statistics lines scored by the jar) is scored in the calling process, from the
  same draws, since the jar is one process the workers cannot share.

Seed level, small-sample corrected: resampling S seeds with replacement gives the mean of the drawn seeds
a variance of ((S - 1) / S) s^2 / S (the plug-in variance), which understates the seed spread (by a
factor sqrt(2/3) on the sd for three seeds). Within each resample the deviation of the drawn seeds' mean
from the mean of all seeds (both on that resample's images) is scaled by sqrt(S / (S - 1)), so the
seed-level variance is the unbiased s^2 / S; with one seed there is no seed level.

A paired difference of two models is the difference of their columns, so every paired test of a task
and every model's interval come from the same resamples.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from bench.metrics.corpus import MAX_N, Gts, Res, _Bleu, _Cider
from bench.metrics.quality import BLEU_METRICS, STATISTICS_METRICS
from bench.metrics.stats import _distinct, per_image_matrix  # one definition of "the distinct caption sets"

#: Rows of one chunk of resamples at most (and about 2^18 image counts): fixed, so the draws of a chunk
#: never depend on the number of workers.
CHUNK_ROWS = 1000
CHUNK_CELLS = 2 ** 17
SEED_CORRECTION = ("seed level scaled by sqrt(S/(S-1)) around the all-seed mean on each resample's images "
                   "(unbiased seed variance for S seeds)")


@dataclass
class Group:
    """One model: a hypothesis set per training seed, with each seed's per-image scores and METEOR lines."""

    runs: Sequence[Res]
    per_images: Sequence[Mapping[str, Mapping[str, float]] | None]
    meteor: Sequence[Mapping[str, Sequence[float]] | None]


@dataclass
class Resamples:
    """Per metric: each group's full-set score per seed, and (R, G) two-level resampled means."""

    n_images: int
    points: dict[str, list[list[float]]]
    samples: dict[str, np.ndarray]


class _Scorer:
    """(R, n) image counts -> {metric: (R, M)} corpus scores of the M distinct hypothesis sets (picklable)."""

    def __init__(self, metrics: Sequence[str], gts: Gts, hyps: Sequence[Res], ids: Sequence[str],
                 per_images: Sequence, cider_df: str):
        self.metrics = list(metrics)
        self.bleus = _bleus(gts, hyps, ids) if set(metrics) & set(BLEU_METRICS) else []
        self.cider = _Cider(gts, hyps, ids) if "CIDEr" in metrics else None
        self.cider_df = cider_df
        if self.cider is not None and cider_df == "distinct":
            self.cider = _SparseCider(self.cider)
        self.means = {}
        for metric in dict.fromkeys(metrics):
            if metric in STATISTICS_METRICS:
                continue
            self.means[metric] = per_image_matrix(per_images, ids, metric)

    def __call__(self, counts: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        if self.bleus:
            by_model = np.stack([b.score(counts) for b in self.bleus], axis=-1)  # (R, 4, M)
            out.update({m: by_model[:, n] for n, m in enumerate(BLEU_METRICS) if m in self.metrics})
        if self.cider is not None:
            out["CIDEr"] = (self.cider.score(counts) if isinstance(self.cider, _SparseCider)
                            else self.cider.score(counts, self.cider_df))
        out.update({m: counts @ v / counts.sum(axis=1, keepdims=True) for m, v in self.means.items()})
        return out


def _bleus(gts: Gts, hyps: Sequence[Res], ids: Sequence[str]) -> list[_Bleu]:
    """`_Bleu` of each hypothesis set, with the references' clipping counts built once for all sets."""
    from collections import Counter

    from bench.metrics.corpus import _caption, _grams

    clips, lengths = [], []
    for i in ids:
        clip: Counter = Counter()
        for r in gts[i]:
            clip |= _grams(r)  # the maximum count over references, as _Bleu
        clips.append(clip)
        lengths.append([len(r.split()) for r in gts[i]])
    out = []
    for res in hyps:
        stats = np.zeros((len(ids), 2 + 2 * MAX_N))
        for k, i in enumerate(ids):
            caption = _caption(res[i])
            test_len = len(caption.split())
            stats[k, 0] = test_len
            stats[k, 1] = min((abs(n - test_len), n) for n in lengths[k])[1]  # ties: the shorter, as _Bleu
            for g, c in _grams(caption).items():
                stats[k, 2 + MAX_N + len(g) - 1] += min(c, clips[k][g])
            stats[k, 2:2 + MAX_N] = [max(0, test_len - n) for n in range(MAX_N)]
        bleu = _Bleu.__new__(_Bleu)
        bleu.stats = stats
        out.append(bleu)
    return out


def chunks(n_resamples: int, n: int) -> list[tuple[int, int]]:
    """(chunk index, rows) covering `n_resamples`, each chunk at most CHUNK_ROWS rows and ~CHUNK_CELLS counts."""
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    size = max(1, min(CHUNK_ROWS, CHUNK_CELLS // n))
    return [(k, min(size, n_resamples - start)) for k, start in enumerate(range(0, n_resamples, size))]


def draws(n: int, rows: int, seed: int, chunk: int) -> np.ndarray:
    """(rows, n) image counts of one chunk's bootstrap resamples (its own random stream)."""
    rng = np.random.default_rng([seed, chunk])
    flat = (rng.integers(0, n, size=(rows, n)) + n * np.arange(rows)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(float)


def seed_means(scores: np.ndarray, columns: Sequence[Sequence[int]], rng: np.random.Generator,
               correct: bool = True) -> np.ndarray:
    """(R, G): per group, the mean of its seeds drawn with replacement, scored by `scores` (R, M).

    `columns[g]` maps group g's seeds to columns of `scores`. With `correct`, the drawn mean's deviation
    from the mean of all the group's seeds is scaled by sqrt(S / (S - 1)) (module docstring).
    """
    rows = len(scores)
    out = np.empty((rows, len(columns)))
    for g, cols in enumerate(columns):
        cols = np.asarray(cols)
        s = len(cols)
        picks = cols[rng.integers(0, s, size=(rows, s))]
        drawn = np.take_along_axis(scores, picks, axis=1).mean(axis=1)
        if correct and s > 1:
            every = scores[:, cols].mean(axis=1)
            drawn = every + math.sqrt(s / (s - 1)) * (drawn - every)
        out[:, g] = drawn
    return out


_STATE: dict = {}


def _init(state: dict) -> None:
    _STATE.clear()
    _STATE.update(state)


def _chunk(job: tuple[int, int]) -> dict[str, np.ndarray]:
    """One chunk's (rows, G) two-level means of the numpy metrics, in a worker or in this process."""
    k, rows = job
    s = _STATE
    counts = draws(s["n"], rows, s["seed"], k)
    scores = s["scorer"](counts)
    rng = np.random.default_rng([s["seed"], k, 1])  # the seed draws: a stream apart from the images'
    picks_state = rng.bit_generator.state
    out = {}
    for m, v in scores.items():
        rng.bit_generator.state = picks_state  # the same seed draws for every metric
        out[m] = seed_means(v, s["columns"], rng, s["correct"])
    return out


def _meteor_chunk(job: tuple[int, int], stats: list[np.ndarray], meteor_score, columns, seed: int, n: int,
                  correct: bool) -> np.ndarray:
    k, rows = job
    counts = draws(n, rows, seed, k)
    summed = np.concatenate([counts @ x for x in stats])  # (M * rows, K): hypothesis-major
    scores = np.asarray(meteor_score(summed), float).reshape(len(stats), rows).T
    rng = np.random.default_rng([seed, k, 1])
    return seed_means(scores, columns, rng, correct)


def _check_ids(gts: Gts, runs: Sequence[Res]) -> list[str]:
    ids = list(runs[0])
    if not ids:
        raise ValueError("no captions to resample")
    if any(set(r) != set(ids) for r in runs):
        raise ValueError("the models (or seeds) caption different images; resampling needs the same ones")
    lacking = [i for i in ids if not gts.get(i)]
    if lacking:
        raise ValueError(f"{len(lacking)} captioned image(s) have no references, e.g. {lacking[:3]}")
    return ids


def resample_groups(gts: Gts, groups: Sequence[Group], metrics: Sequence[str], n_resamples: int, seed: int = 0,
                    cider_df: str = "distinct", meteor_score=None, workers: int | None = None,
                    correct: bool = True) -> Resamples:
    """Every group's two-level bootstrap distribution of every metric, from one shared set of resamples.

    METEOR is exact (summed statistics lines, scored by `meteor_score`) when every seed has its lines and
    `meteor_score` is given, else it is resampled from per-image scores like ROUGE-L. `workers`: processes
    (default: the usable cores); 1 scores in this process. Deterministic for a seed, whatever `workers`.
    """
    if any(not g.runs for g in groups):
        raise ValueError("each model needs at least one seed")
    runs = [r for g in groups for r in g.runs]
    ids = _check_ids(gts, runs)
    per = [p for g in groups for p in g.per_images]
    met = [x for g in groups for x in g.meteor]
    if len(per) != len(runs) or len(met) != len(runs):
        raise ValueError("per_images and meteor need one entry per seed")
    keep, column = _distinct(runs, per, met)
    offsets = np.cumsum([0, *(len(g.runs) for g in groups)])
    columns = [column[offsets[g]:offsets[g + 1]] for g in range(len(groups))]
    exact_meteor = "METEOR" in metrics and meteor_score is not None and all(met[k] is not None for k in keep)
    numeric = [m for m in metrics if not (m == "METEOR" and exact_meteor)]
    scorer = _Scorer(numeric, gts, [runs[k] for k in keep], ids, [per[k] for k in keep], cider_df)
    n = len(ids)
    full = scorer(np.ones((1, n)))
    jobs = chunks(n_resamples, n)
    state = {"scorer": scorer, "columns": columns, "seed": seed, "n": n, "correct": correct}
    parts = _run(jobs, state, workers)
    samples = {m: np.concatenate([p[m] for p in parts]) for m in full}
    if exact_meteor:
        stats = [np.array([met[k][i] for i in ids], float) for k in keep]
        full["METEOR"] = np.asarray(meteor_score(np.stack([s.sum(axis=0) for s in stats])), float)[None, :]
        samples["METEOR"] = np.concatenate([_meteor_chunk(j, stats, meteor_score, columns, seed, n, correct)
                                            for j in jobs])
    points = {m: [[float(full[m][0, c]) for c in cols] for cols in columns] for m in metrics if m in full}
    return Resamples(n, points, {m: samples[m] for m in metrics if m in samples})


def _run(jobs: list[tuple[int, int]], state: dict, workers: int | None) -> list[dict[str, np.ndarray]]:
    workers = usable_cores() if workers is None else max(1, int(workers))
    workers = min(workers, len(jobs))
    if workers == 1:
        _init(state)
        try:
            return [_chunk(j) for j in jobs]
        finally:
            _STATE.clear()
    import multiprocessing

    # spawn, not fork: the caller may hold threads (the METEOR jar's reader) that fork would copy.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init, initargs=(state,)) as pool:
        return list(pool.map(_chunk, jobs))


def usable_cores() -> int:
    """The cores this process may run on (its affinity), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _SparseCider:
    """CIDEr-D ("distinct" document frequencies) of many resamples at once, from `_Cider`'s terms.

    `_Cider.per_image` scores one resample at a time; here the same sparse terms become sparse matrices,
    and a chunk of R resamples is scored with a few sparse x dense (G, R) products: the document
    frequencies of all R resamples are one product with the presence matrix, and every dot product of
    tf-idf vectors one product with the (G, R) squared weights. Same numbers up to float rounding.
    """

    def __init__(self, cider: _Cider):
        from scipy import sparse

        def matrix(t) -> sparse.csr_matrix:
            return sparse.csr_matrix((t.val, (t.row, t.gram)), shape=(len(t.own), cider.n_grams))

        self.n = cider.n
        self.presence = sparse.csr_matrix((np.ones(len(cider.pres_img)), (cider.pres_gram, cider.pres_img)),
                                          shape=(cider.n_grams, cider.n))
        self.ref, self.ref_own = matrix(cider.ref), cider.ref.own
        self.hyp = [(matrix(t), t.own) for t in cider.hyp]
        self.num = [(matrix(t), t.own) for t in cider.num]
        self.penalty = np.stack(cider.penalty)  # (M, refs)
        n_refs = len(cider.ref_img)
        # per reference -> per image sum, times CIDEr's factor (10 / (orders x references of the image))
        self.to_image = sparse.csr_matrix((cider.image_factor[cider.ref_img], (cider.ref_img, np.arange(n_refs))),
                                          shape=(cider.n, n_refs))
        self.ref_img = cider.ref_img

    def score(self, counts: np.ndarray) -> np.ndarray:
        """(R, n) image counts -> (R, M) corpus CIDEr-D of each model (df from the distinct images drawn)."""
        present = np.minimum(counts, 1.0)
        log_n = np.log(present.sum(axis=1))  # (R,)
        df = np.asarray(self.presence @ present.T)  # (G, R)
        w2 = (log_n[None, :] - np.log(np.maximum(df, 1.0))) ** 2
        own_w2 = log_n ** 2  # an n-gram of one image's references has df 0 or 1 there: weight log(N)^2

        def dot(matrix, own) -> np.ndarray:
            rows = np.asarray(matrix @ w2) + own[:, None] * own_w2[None, :]
            return rows.reshape(-1, MAX_N, len(counts))  # (owner rows, n-gram orders, R)

        ref_norm = np.sqrt(dot(self.ref, self.ref_own))
        total = counts.sum(axis=1)
        out = np.empty((len(counts), len(self.hyp)))
        for m, ((hyp, hyp_own), (num, num_own)) in enumerate(zip(self.hyp, self.num, strict=True)):
            denom = np.sqrt(dot(hyp, hyp_own))[self.ref_img] * ref_norm
            sim = np.divide(dot(num, num_own), denom, out=np.zeros_like(denom), where=denom > 0)
            per_ref = sim.sum(axis=1) * self.penalty[m][:, None]  # (refs, R)
            per_image = np.asarray(self.to_image @ per_ref)  # (n, R)
            out[:, m] = (per_image * counts.T).sum(axis=0) / total
        return out


def cider_resamples(gts: Gts, res: Res, n_resamples: int, seed: int = 0) -> np.ndarray:
    """(n_resamples,) CIDEr-D of `res` on bootstrap resamples of its images (chunked draws of `seed`:
    the same draws for every caption set of the same images, so sets can be compared resample by resample)."""
    ids = _check_ids(gts, [res])
    cider = _SparseCider(_Cider(gts, [res], ids))
    return np.concatenate([cider.score(draws(len(ids), rows, seed, k))[:, 0] for k, rows in chunks(n_resamples, len(ids))])
