"""Bootstrap confidence intervals and paired significance tests for corpus caption metrics.

Everything works from PTB-tokenised texts (pycocoevalcap's shapes: `gts` image_id -> list of reference
strings, `res` image_id -> [caption]), so no Java runs per resample. A resample draws n images with
replacement and recomputes each corpus score the way pycocoevalcap computes it on a whole set:

- BLEU-1..4 is corpus-level: clipped n-gram matches, n-gram counts and lengths (closest reference length
  per image) are summed over the images, then the geometric mean and brevity penalty are taken. Each image
  keeps these sufficient statistics, so a resample is a weighted sum; on all images it reproduces
  pycocoevalcap's `Bleu(4)` exactly.
- CIDEr-D (n=4, sigma=6) is re-implemented here because its idf depends on the set scored, so document
  frequencies and log(N) are recomputed for each resample. How duplicate draws count (`cider_df`):
  "distinct" (default): df and N come from the distinct images drawn, and each image's score counts as
  often as it was drawn, i.e. the multiplicity-weighted mean of what pycocoevalcap's `Cider` gives on the
  set of distinct drawn images. "copies": every drawn copy is a separate document, exactly `Cider` on the
  resampled set with duplicates under distinct keys. Copies make the rare n-grams of a duplicated image
  look common (df 2 or 3 instead of 1), an artefact of resampling that real test sets of distinct images
  never show: on 5,000 COCO-like images it pulls the bootstrap mean 1.6 standard deviations below the
  point estimate (500 images: 1.3), so a percentile interval barely holds the point, while "distinct" is
  unbiased to within 0.1 sd with the same spread (the same spread as resampling per-image scores with
  the full-set df, too: df variability adds little).
- ROUGE-L and SPICE corpus scores are means of per-image scores, passed in as `per_image`.
- METEOR: pycocoevalcap's corpus METEOR is the Java tool's aggregate over summed alignment statistics,
  which is not the mean of per-image scores (on the shapes task 0.293 vs 0.325). Per-image statistics are
  not exposed, so the approximation used is: resample the mean of per-image scores, and, when the official
  corpus value is given (`corpus=`), translate the bootstrap distribution by (corpus - mean) so that the
  point is the reported number and the width comes from per-image variability. The same holds for any
  other metric given by per-image scores and a corpus value.

Intervals are percentile intervals. The paired test resamples the same images for both models and
reports the bootstrap interval of the difference and a two-sided p-value from the bootstrap distribution
centred under the null (Efron & Tibshirani 1993, section 16.4; Berg-Kirkpatrick et al. 2012): p = (1 +
#{|d* - d| >= |d|}) / (1 + B). A model against itself gives d = 0 and p = 1 exactly.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from bench.metrics.quality import BLEU_METRICS, INTERVAL_METRICS

DEFAULT_METRICS = INTERVAL_METRICS
MAX_N = 4  # n-gram orders of BLEU and CIDEr-D
SIGMA = 6.0  # CIDEr-D length penalty width
CIDER_DF = ("distinct", "copies")  # how a resample's duplicate images count in CIDEr-D's df
# pycocoevalcap's BLEU smoothing constants (keep 0/0 at 0 and avoid division by zero).
_TINY, _SMALL = 1e-15, 1e-9

Gts = Mapping[str, Sequence[str]]
Res = Mapping[str, Sequence[str] | str]
PerImage = Mapping[str, Mapping[str, float]]  # image_id -> metric -> score, as QualityScores.per_image


@dataclass(frozen=True)
class Interval:
    """A bootstrap percentile interval of one corpus metric."""

    point: float  # the corpus score on all images
    low: float
    high: float
    confidence: float
    n_resamples: int
    n_images: int


@dataclass(frozen=True)
class PairedResult:
    """Model A minus model B on the same images, resampled jointly."""

    metric: str
    score_a: float
    score_b: float
    delta: float  # score_a - score_b
    low: float  # percentile interval of delta
    high: float
    p_value: float  # two-sided, null hypothesis delta = 0
    confidence: float
    n_resamples: int
    n_images: int


def _grams(sentence: str) -> Counter:
    words = sentence.split()
    return Counter(tuple(words[i:i + k]) for k in range(1, MAX_N + 1) for i in range(len(words) - k + 1))


def _caption(value: Sequence[str] | str) -> str:
    if isinstance(value, str):
        return value
    if len(value) != 1:
        raise ValueError(f"each image needs exactly one caption, got {len(value)}")
    return value[0]


class _Bleu:
    """Per-image BLEU sufficient statistics: test length, closest reference length, guesses, matches."""

    def __init__(self, gts: Gts, res: Res, ids: Sequence[str]):
        stats = np.zeros((len(ids), 2 + 2 * MAX_N))
        for k, i in enumerate(ids):
            caption = _caption(res[i])
            hyp, test_len = _grams(caption), len(caption.split())
            ref_lens = [len(r.split()) for r in gts[i]]
            clip: Counter = Counter()
            for r in gts[i]:
                clip |= _grams(r)  # Counter union keeps the maximum count over references
            # Closest reference length; ties go to the shorter one, as in pycocoevalcap.
            stats[k, 0] = test_len
            stats[k, 1] = min((abs(n - test_len), n) for n in ref_lens)[1]
            for g, c in hyp.items():
                stats[k, 2 + MAX_N + len(g) - 1] += min(c, clip[g])
            stats[k, 2:2 + MAX_N] = [max(0, test_len - n) for n in range(MAX_N)]
        self.stats = stats

    def score(self, counts: np.ndarray) -> np.ndarray:
        """(R, n) image counts -> (R, 4) BLEU-1..4, with pycocoevalcap's order of operations."""
        s = counts @ self.stats
        test_len, ref_len = s[:, 0], s[:, 1]
        guess, correct = s[:, 2:2 + MAX_N], s[:, 2 + MAX_N:]
        bleu = np.cumprod((correct + _TINY) / (guess + _SMALL), axis=1) ** (1.0 / np.arange(1, MAX_N + 1))
        ratio = (test_len + _TINY) / (ref_len + _SMALL)
        # math.exp, not np.exp, so the full-set score is bit-identical to pycocoevalcap's.
        penalty = np.array([math.exp(1 - 1 / r) if r < 1 else 1.0 for r in ratio])
        return bleu * penalty[:, None]


class _Terms(NamedTuple):
    """Sums over n-grams of val * w_g^2 into rows (row = MAX_N * owner row + order), kept sparse."""

    row: np.ndarray  # triplets (row, gram, val) of n-grams that get an individual df per resample
    gram: np.ndarray
    val: np.ndarray
    own: np.ndarray  # per row: summed val of n-grams found only in the references of the row's image
    image: np.ndarray  # per row: that image


class _Cider:
    """CIDEr-D of several models against shared references, rescored cheaply for any image multiset.

    With tf-idf weight w_g = log(N) - log(max(1, df_g)) >= 0 shared by hypothesis and reference, the
    clipped dot product is sum_g min(tf_h, tf_r) * tf_r * w_g^2 and the squared norms are sum_g tf^2 w_g^2:
    every term is a fixed sparse vector dotted with w^2, and only w changes with the resample. The sparse
    products are np.bincount over (row, gram, value) triplets.
    """

    def __init__(self, gts: Gts, hyps: Sequence[Res], ids: Sequence[str]):
        vocab: dict[tuple[str, ...], int] = {}
        pres_img, pres_gram, ref_img, ref_len, first_ref = [], [], [], [], []
        ref = ([], [], [])
        ref_tf: list[dict[int, int]] = []
        for k, i in enumerate(ids):
            seen: set[int] = set()
            first_ref.append(len(ref_img))
            for sentence in gts[i]:
                r = len(ref_img)
                ref_img.append(k)
                ref_len.append(_bigram_count(sentence))
                tf: dict[int, int] = {}
                for g, c in _grams(sentence).items():
                    tf[vocab.setdefault(g, len(vocab))] = c
                    _append(ref, MAX_N * r + len(g) - 1, vocab[g], c * c)
                ref_tf.append(tf)
                seen.update(tf)
            pres_img += [k] * len(seen)
            pres_gram += sorted(seen)
        first_ref.append(len(ref_img))
        self.n = len(ids)
        self.ref_img = np.array(ref_img, np.intp)
        n_refs = np.bincount(self.ref_img, minlength=self.n)
        self.image_factor = 10.0 / (MAX_N * n_refs)  # mean over n-gram orders and references, times 10

        hyp_terms, num_terms, self.penalty = [], [], []
        for res in hyps:
            hyp, num = ([], [], []), ([], [], [])
            hyp_len = np.zeros(self.n)
            for k, i in enumerate(ids):
                caption = _caption(res[i])
                hyp_len[k] = _bigram_count(caption)
                grams = [(vocab.setdefault(g, len(vocab)), len(g) - 1, c) for g, c in _grams(caption).items()]
                for j, order, c in grams:
                    _append(hyp, MAX_N * k + order, j, c * c)
                for r in range(first_ref[k], first_ref[k + 1]):
                    tf = ref_tf[r]
                    for j, order, c in grams:
                        if j in tf:
                            _append(num, MAX_N * r + order, j, min(c, tf[j]) * tf[j])
            hyp_terms.append(hyp)
            num_terms.append(num)
            delta = hyp_len[self.ref_img] - np.array(ref_len, float)
            self.penalty.append(np.exp(-(delta ** 2) / (2 * SIGMA ** 2)))

        # Speed: most n-grams (about 80% on COCO-like text) occur in the references of one image only.
        # Within that image's own rows their df is that image's count, so their terms are summed once here
        # and scaled per resample; only the other n-grams need a df of their own.
        pres_img, pres_gram = np.array(pres_img, np.intp), np.array(pres_gram, np.intp)
        owner = np.full(len(vocab), -1, np.intp)
        single = np.bincount(pres_gram, minlength=len(vocab))[pres_gram] == 1
        owner[pres_gram[single]] = pres_img[single]
        images = np.arange(self.n)
        self.ref = _terms(ref, owner, self.ref_img)
        self.hyp = [_terms(t, owner, images) for t in hyp_terms]
        self.num = [_terms(t, owner, self.ref_img) for t in num_terms]
        # Renumber the n-grams still needed individually, and keep only their presence entries.
        used = np.unique(np.concatenate([t.gram for t in (self.ref, *self.hyp, *self.num)]))
        renumber = np.full(len(vocab), -1, np.intp)
        renumber[used] = np.arange(len(used))
        kept = renumber[pres_gram] >= 0
        self.pres_img, self.pres_gram = pres_img[kept], renumber[pres_gram[kept]]
        self.n_grams = len(used)
        for name in ("ref", "hyp", "num"):
            value = getattr(self, name)
            fix = lambda t: t._replace(gram=renumber[t.gram])  # noqa: E731
            setattr(self, name, fix(value) if isinstance(value, _Terms) else [fix(t) for t in value])

    def per_image(self, counts: np.ndarray) -> np.ndarray:
        """Per-image scores (M, n) with df and N taken from the multiset `counts` (n,) of images."""
        # df values are integers in [0, N]: a table of w^2 by df replaces a log per n-gram.
        n_total = int(round(counts.sum()))
        table = (math.log(n_total) - np.log(np.maximum(np.arange(n_total + 1), 1.0))) ** 2
        df = np.bincount(self.pres_gram, weights=counts[self.pres_img], minlength=self.n_grams)
        w2, own_w2 = table[df.astype(np.intp)], table[counts.astype(np.intp)]

        def dot(t: _Terms) -> np.ndarray:
            sums = np.bincount(t.row, weights=t.val * w2[t.gram], minlength=len(t.own))
            return (sums + t.own * own_w2[t.image]).reshape(-1, MAX_N)

        ref_norm = np.sqrt(dot(self.ref))
        out = np.empty((len(self.hyp), self.n))
        for m, (hyp, num, penalty) in enumerate(zip(self.hyp, self.num, self.penalty, strict=True)):
            denom = np.sqrt(dot(hyp))[self.ref_img] * ref_norm
            # A zero norm means a zero dot product too; pycocoevalcap then leaves the similarity at 0.
            sim = np.divide(dot(num), denom, out=np.zeros_like(denom), where=denom > 0)
            per_ref = sim.sum(axis=1) * penalty
            out[m] = np.bincount(self.ref_img, weights=per_ref, minlength=self.n) * self.image_factor
        return out

    def score(self, counts: np.ndarray, cider_df: str = "distinct") -> np.ndarray:
        """(R, n) image counts -> (R, M) corpus CIDEr-D of each model (see bootstrap_ci for `cider_df`)."""
        return np.stack([self.per_image(c if cider_df == "copies" else np.minimum(c, 1.0)) @ c / c.sum()
                         for c in counts])


def _append(triplets: tuple[list, list, list], row: int, gram: int, val: int) -> None:
    for column, x in zip(triplets, (row, gram, val), strict=True):
        column.append(x)


def _terms(triplets: tuple[list, list, list], owner: np.ndarray, row_image: np.ndarray) -> _Terms:
    """Split triplets into n-grams needing their own df and per-row sums of those owned by the row's image."""
    row, gram, val = (np.array(x, t) for x, t in zip(triplets, (np.intp, np.intp, float), strict=True))
    image = np.repeat(row_image, MAX_N)
    own = owner[gram] == image[row]
    sums = np.bincount(row[own], weights=val[own], minlength=len(image))
    return _Terms(row[~own], gram[~own], val[~own], sums, image)


def _bigram_count(sentence: str) -> int:
    # pycocoevalcap's CIDEr "length" counts bigram occurrences (its n == 1 is the 0-based order), so a
    # caption of L >= 1 words has length L - 1; kept for exact equality.
    return max(len(sentence.split()) - 1, 0)


def _from_per_image(metric: str) -> bool:
    return metric not in BLEU_METRICS and metric != "CIDEr"


def _check(gts: Gts, hyps: Sequence[Res]) -> list[str]:
    ids = list(hyps[0])
    if not ids:
        raise ValueError("no captions to resample")
    for res in hyps:
        if set(res) != set(ids):
            raise ValueError("the models caption different images; a paired test needs the same ones")
    lacking = [i for i in ids if not gts.get(i)]
    if lacking:
        raise ValueError(f"{len(lacking)} captioned image(s) have no references, e.g. {lacking[:3]}")
    return ids


Scorer = Callable[[np.ndarray], dict[str, np.ndarray]]


def _scorer(metrics: Sequence[str], gts: Gts, hyps: Sequence[Res], ids: Sequence[str],
            per_images: Sequence[PerImage | None], cider_df: str) -> Scorer:
    """A function from (R, n) image counts to {metric: (R, M) corpus scores of the M models}."""
    if cider_df not in CIDER_DF:
        raise ValueError(f"cider_df must be one of {CIDER_DF}, got {cider_df!r}")
    bleus = [_Bleu(gts, res, ids) for res in hyps] if set(metrics) & set(BLEU_METRICS) else []
    cider = _Cider(gts, hyps, ids) if "CIDEr" in metrics else None
    means = {}
    for metric in filter(_from_per_image, dict.fromkeys(metrics)):
        if any(p is None for p in per_images):
            raise ValueError(f"{metric} is resampled from per-image scores: pass per_image")
        try:
            values = np.array([[p[i][metric] for i in ids] for p in per_images], float)
        except KeyError as e:
            raise ValueError(f"per_image lacks {metric} for image {e}") from None
        if not np.isfinite(values).all():
            raise ValueError(f"per-image {metric} scores include NaN or infinity")
        means[metric] = values.T  # (n, M)

    def score(counts: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        if bleus:
            by_model = np.stack([b.score(counts) for b in bleus], axis=-1)  # (R, 4, M)
            out.update({m: by_model[:, n] for n, m in enumerate(BLEU_METRICS) if m in metrics})
        if cider is not None:
            out["CIDEr"] = cider.score(counts, cider_df)
        out.update({m: counts @ v / counts.sum(axis=1, keepdims=True) for m, v in means.items()})
        return out

    return score


def _resample(score: Scorer, n: int, n_resamples: int, seed: int) -> dict[str, np.ndarray]:
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_resamples, 2 ** 20 // n))  # bounds the (chunk, n) count matrix in memory
    parts = []
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        draws = rng.integers(0, n, size=(size, n)) + n * np.arange(size)[:, None]
        counts = np.bincount(draws.ravel(), minlength=size * n).reshape(size, n).astype(float)
        parts.append(score(counts))
    return {m: np.concatenate([p[m] for p in parts]) for m in parts[0]}


def _percentiles(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    low, high = np.quantile(samples, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def bootstrap_ci(
    gts: Gts,
    res: Res,
    metrics: Sequence[str] = DEFAULT_METRICS,
    per_image: PerImage | None = None,
    corpus: Mapping[str, float] | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    cider_df: str = "distinct",
) -> dict[str, Interval]:
    """Percentile bootstrap intervals of corpus metrics over the images of `res`.

    `gts`/`res` are PTB-tokenised (as pycocoevalcap's scorers take them). BLEU-1..4 and CIDEr are
    recomputed per resample from the texts; other metrics (METEOR, ROUGE-L, SPICE) are means of
    `per_image[image_id][metric]`, translated to `corpus[metric]` when given (see the module docstring).
    All metrics share the same resamples; the result is deterministic for a seed. `cider_df` says how
    duplicate draws count in CIDEr-D's document frequencies ("distinct" or "copies", module docstring).
    """
    _check_confidence(confidence)
    ids = _check(gts, [res])
    score = _scorer(metrics, gts, [res], ids, [per_image], cider_df)
    points = {m: float(v[0, 0]) for m, v in score(np.ones((1, len(ids)))).items()}
    samples = _resample(score, len(ids), n_resamples, seed)
    out = {}
    for m in metrics:
        # Translate a per-image mean to the official corpus value (METEOR; see the module docstring).
        shift = corpus[m] - points[m] if corpus is not None and m in corpus and _from_per_image(m) else 0.0
        low, high = _percentiles(samples[m][:, 0], confidence)
        out[m] = Interval(points[m] + shift, low + shift, high + shift, confidence, n_resamples, len(ids))
    return out


def paired_test(
    gts: Gts,
    res_a: Res,
    res_b: Res,
    metric: str = "CIDEr",
    per_image: tuple[PerImage, PerImage] | None = None,
    corpus: tuple[Mapping[str, float], Mapping[str, float]] | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    cider_df: str = "distinct",
) -> PairedResult:
    """Paired bootstrap of `metric`(A) - `metric`(B) over the same images.

    Each resample draws one multiset of images and scores both models on it (for CIDEr with the same
    document frequencies). `per_image`/`corpus` are (A, B) pairs for metrics given by per-image scores.
    The p-value is two-sided for delta = 0: (1 + #{|d* - d| >= |d|}) / (1 + n_resamples).
    """
    _check_confidence(confidence)
    ids = _check(gts, [res_a, res_b])
    score = _scorer([metric], gts, [res_a, res_b], ids, list(per_image) if per_image else [None, None],
                    cider_df)
    a, b = (float(x) for x in score(np.ones((1, len(ids))))[metric][0])
    shift = 0.0
    if corpus is not None and _from_per_image(metric):
        # Translate per-image means to the official corpus values (METEOR; see the module docstring).
        shift = (corpus[0][metric] - corpus[1][metric]) - (a - b)
        a, b = float(corpus[0][metric]), float(corpus[1][metric])
    samples = _resample(score, len(ids), n_resamples, seed)[metric]
    deltas = samples[:, 0] - samples[:, 1] + shift
    delta = float(a - b)
    p = (1 + int(np.count_nonzero(np.abs(deltas - delta) >= abs(delta)))) / (1 + n_resamples)
    low, high = _percentiles(deltas, confidence)
    return PairedResult(metric, float(a), float(b), delta, low, high, p, confidence, n_resamples, len(ids))


def cider_d(gts: Gts, res: Res) -> tuple[float, np.ndarray]:
    """CIDEr-D of `res` on all its images: (corpus score, per-image scores in `res` order).

    Equal to pycocoevalcap's `Cider().compute_score(gts, res)` up to float rounding.
    """
    ids = _check(gts, [res])
    per_image = _Cider(gts, [res], ids).per_image(np.ones(len(ids)))[0]
    return float(per_image.mean()), per_image


def bleu(gts: Gts, res: Res) -> list[float]:
    """Corpus BLEU-1..4 of `res`, identical to pycocoevalcap's `Bleu(4)` (closest reference length)."""
    ids = _check(gts, [res])
    return [float(s) for s in _Bleu(gts, res, ids).score(np.ones((1, len(ids))))[0]]
