"""Diversity of k captions sampled per image, always read beside their quality.

Every measure works on word-tokenised text (`bench.metrics.errprop.words`: lower-cased alphanumeric
words, punctuation dropped), so all paradigms are counted the same way. Per image (its k captions):

- Div-n (Shetty et al., "Speaking the Same Language: Matching Machine to Human Captions by
  Adversarial Training", ICCV 2017; Aneja et al., "Sequential Latent Spaces for Modeling the
  Intention During Diverse Image Captioning", ICCV 2019, report the same measure): distinct n-grams
  of the k captions together divided by the total number of WORDS in them, not the number of
  n-grams, as Shetty et al.'s released code does (captionGAN, imagernn/utils.py `compute_div_n`:
  distinct n-grams of an image's caption set over the summed lengths of its captions). n-grams never
  cross a caption boundary, so Div-2 of captions of L words is at most (L - 1) / L. k identical
  captions without a repeated n-gram give distinct / (k x L); captions sharing no word give Div-1 = 1.
- mBLEU-4 (Shetty et al. 2017): each caption's BLEU-4 against the other k-1 captions as references
  (pycocoevalcap's `Bleu(4)`, sentence level, closest reference length), averaged over the k. Lower is
  more diverse; k identical captions give 1.
- Self-CIDEr (Q. Wang and A. B. Chan, "Describing like Humans: on Diversity in Image Captioning",
  CVPR 2019, section 3): latent semantic analysis of the captions, kernelised with CIDEr. K is the
  k x k matrix K_ij = CIDEr(c_i, c_j); as K = Phi^T Phi for the captions' tf-idf features Phi, the
  singular values of Phi are sigma_i = sqrt(lambda_i) for the eigenvalues lambda_i of K, and the
  diversity is r = -log_k(sigma_max / sum_i sigma_i), in [0, 1]: 0 when every caption is the same
  (one concept), 1 when the captions are mutually orthogonal with equal norms (K diagonal). The
  kernel is the original CIDEr (cosine similarity of tf-idf n-gram vectors, n = 1..4, averaged, times
  10; no CIDEr-D clipping or length penalty, which would make K asymmetric), with document frequencies
  from the references of the images scored, as in the authors' code (which also clips eigenvalues at 0).
- CIDEr-D of each sampled caption against the references (pycocoevalcap's definition, via
  `bench.metrics.stats.cider_d`, one call per sample index so document frequencies are the references'):
  best-of-k (oracle) and mean-of-k, so diversity is never read without accuracy.
Over all images: the global vocabulary (distinct words used by all sampled captions) and the
novel-caption rate (share of sampled captions whose word sequence is not a training caption's).

Intervals: percentile bootstrap over images (seeded); per-image measures are re-averaged, the
vocabulary is recounted over the images drawn.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from bench.metrics.errprop import words

MAX_N = 4  # n-gram orders of BLEU-4 and CIDEr
PER_IMAGE = ("div1", "div2", "mbleu4", "self_cider", "novel_rate", "cider_best_of_k", "cider_mean_of_k")
METRICS = (*PER_IMAGE, "vocab")


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def div_n(captions: Sequence[str], n: int) -> float:
    """Distinct n-grams / total words over the captions of one image (Shetty et al. 2017's and Aneja
    et al. 2019's denominator; see the module docstring). 0 when the captions have no word."""
    tokens = [words(c) for c in captions]
    total = sum(len(t) for t in tokens)
    return len({g for t in tokens for g in _ngrams(t, n)}) / total if total else 0.0


def mbleu4(captions: Sequence[str]) -> float:
    """Mean sentence BLEU-4 of each caption against the other k-1 (pycocoevalcap); needs k >= 2."""
    from pycocoevalcap.bleu.bleu import Bleu

    if len(captions) < 2:
        raise ValueError(f"mBLEU-4 needs at least 2 captions per image, got {len(captions)}")
    texts = [" ".join(words(c)) for c in captions]
    gts = {str(j): [t for i, t in enumerate(texts) if i != j] for j in range(len(texts))}
    res = {str(j): [t] for j, t in enumerate(texts)}
    _, per_sentence = Bleu(MAX_N).compute_score(gts, res, verbose=0)
    return float(np.mean(per_sentence[MAX_N - 1]))


class DocumentFrequency:
    """CIDEr's idf: log(N) - log(max(1, df)) over N reference documents (one per image)."""

    def __init__(self, references: Iterable[Sequence[str]]):
        self.df: Counter = Counter()
        n = 0
        for refs in references:
            n += 1
            self.df.update({g for r in refs for k in range(1, MAX_N + 1) for g in _ngrams(words(r), k)})
        self.log_n = math.log(float(max(n, 1)))

    def vectors(self, caption: str) -> list[dict[tuple[str, ...], float]]:
        """tf-idf vector of each n-gram order (term frequency = count, as in pycocoevalcap)."""
        tokens = words(caption)
        out = []
        for k in range(1, MAX_N + 1):
            counts = Counter(_ngrams(tokens, k))
            out.append({g: c * (self.log_n - math.log(max(1.0, self.df[g]))) for g, c in counts.items()})
        return out


def cider_kernel(captions: Sequence[str], df: DocumentFrequency) -> np.ndarray:
    """K_ij = CIDEr(c_i, c_j): 10 x the mean over n = 1..4 of the cosine of the tf-idf vectors."""
    vecs = [df.vectors(c) for c in captions]
    norms = [[math.sqrt(sum(v * v for v in vn.values())) for vn in vc] for vc in vecs]
    k = len(captions)
    kernel = np.zeros((k, k))
    for i in range(k):
        for j in range(i, k):
            total = 0.0
            for n in range(MAX_N):
                if norms[i][n] > 0 and norms[j][n] > 0:
                    a, b = vecs[i][n], vecs[j][n]
                    dot = sum(v * b[g] for g, v in a.items() if g in b)
                    total += dot / (norms[i][n] * norms[j][n])
            kernel[i, j] = kernel[j, i] = 10.0 * total / MAX_N
    return kernel


def self_cider(kernel: np.ndarray) -> float:
    """Wang & Chan (2019): -log_k(sqrt(lambda_max) / sum_i sqrt(lambda_i)) over the eigenvalues of K.

    Eigenvalues below numpy's rank tolerance (k x eps x lambda_max) are rounding noise and count as
    0: the authors' code clips only negatives, but the square root turns a 1e-16 remainder into 1e-8
    of spurious diversity. An all-zero kernel (no caption has a weighted n-gram) has no spread: 0.
    """
    k = kernel.shape[0]
    if kernel.shape != (k, k) or k < 2:
        raise ValueError(f"Self-CIDEr needs a square kernel of at least 2 captions, got shape {kernel.shape}")
    lam = np.linalg.eigvalsh((kernel + kernel.T) / 2)
    lam[lam < k * np.finfo(float).eps * max(lam.max(), 0.0)] = 0.0
    sigma = np.sqrt(lam)
    if sigma.sum() <= 0:
        return 0.0
    return float(max(0.0, -math.log(sigma.max() / sigma.sum()) / math.log(k)))


def per_image_cider(samples: Mapping[str, Sequence[str]], references: Mapping[str, Sequence[str]],
                    ) -> dict[str, list[float]]:
    """CIDEr-D of every sampled caption against its image's references: image -> k scores."""
    from bench.metrics.stats import cider_d

    ids = list(samples)
    k = len(samples[ids[0]])
    gts = {i: [" ".join(words(r)) for r in references[i]] for i in ids}
    columns = [cider_d(gts, {i: [" ".join(words(samples[i][j]))] for i in ids})[1] for j in range(k)]
    return {i: [float(col[n]) for col in columns] for n, i in enumerate(ids)}


def measure(samples: Mapping[str, Sequence[str]], references: Mapping[str, Sequence[str]],
            training_captions: Iterable[str]) -> dict[str, Any]:
    """Every measure per image and overall: {"per_image": {id: {metric: value}}, "corpus": {...},
    "vocabulary": {id: [words]}} for `samples` (image id -> its k captions, k >= 2 and equal for all)."""
    ids = list(samples)
    ks = {len(v) for v in samples.values()}
    if not ids or len(ks) != 1 or min(ks) < 2:
        raise ValueError(f"need k >= 2 captions for every image, the same k for all; got k in {sorted(ks)}")
    seen = {" ".join(words(c)) for c in training_captions}
    df = DocumentFrequency(references[i] for i in ids)
    cider = per_image_cider(samples, references)
    per_image: dict[str, dict[str, float]] = {}
    for i in ids:
        caps = samples[i]
        per_image[i] = {
            "div1": div_n(caps, 1), "div2": div_n(caps, 2), "mbleu4": mbleu4(caps),
            "self_cider": self_cider(cider_kernel(caps, df)),
            "novel_rate": sum(" ".join(words(c)) not in seen for c in caps) / len(caps),
            "cider_best_of_k": max(cider[i]), "cider_mean_of_k": float(np.mean(cider[i])),
        }
    vocabulary = {i: sorted({w for c in samples[i] for w in words(c)}) for i in ids}
    corpus = {m: float(np.mean([per_image[i][m] for i in ids])) for m in PER_IMAGE}
    corpus["vocab"] = float(len(set().union(*map(set, vocabulary.values()))))
    return {"per_image": per_image, "corpus": corpus, "vocabulary": vocabulary, "k": ks.pop()}


def bootstrap(measured: Mapping[str, Any], n_resamples: int, seed: int, confidence: float = 0.95,
              ) -> dict[str, dict[str, float]]:
    """Percentile intervals of every corpus measure, resampling images with replacement."""
    if n_resamples < 1:
        return {}
    ids = list(measured["per_image"])
    values = np.array([[measured["per_image"][i][m] for m in PER_IMAGE] for i in ids])
    word_index: dict[str, int] = {}
    rows = [[word_index.setdefault(w, len(word_index)) for w in measured["vocabulary"][i]] for i in ids]
    uses = np.zeros((len(ids), max(1, len(word_index))), dtype=bool)
    for n, row in enumerate(rows):
        uses[n, row] = True
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(ids), size=(n_resamples, len(ids)))
    means = values[draws].mean(axis=1)  # (resamples, metrics)
    vocab = np.array([uses[np.unique(d)].any(axis=0).sum() for d in draws], dtype=float)
    q = [(1 - confidence) / 2, (1 + confidence) / 2]
    out = {}
    for col, m in enumerate(PER_IMAGE):
        low, high = np.quantile(means[:, col], q)
        out[m] = {"point": measured["corpus"][m], "low": float(low), "high": float(high)}
    low, high = np.quantile(vocab, q)
    out["vocab"] = {"point": measured["corpus"]["vocab"], "low": float(low), "high": float(high)}
    for iv in out.values():
        iv.update(confidence=confidence, n_resamples=n_resamples, n_images=len(ids))
    return out


def paired_difference(a: Mapping[str, Mapping[str, float]], b: Mapping[str, Mapping[str, float]], metric: str,
                      n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict[str, float]:
    """Model A minus model B on a per-image measure (`measure(...)["per_image"]` of each), over the
    images both sampled, resampled jointly: the difference, its percentile interval and a two-sided
    bootstrap p-value (null-centred, as `bench.metrics.stats.paired_test`)."""
    if metric not in PER_IMAGE:
        raise ValueError(f"paired {metric!r}: accepted: {', '.join(PER_IMAGE)} (vocab is not per image)")
    ids = sorted(set(a) & set(b))
    if not ids:
        raise ValueError("paired difference: the two models share no image")
    d = np.array([a[i][metric] - b[i][metric] for i in ids])
    delta = float(d.mean())
    rng = np.random.default_rng(seed)
    deltas = d[rng.integers(0, len(ids), size=(n_resamples, len(ids)))].mean(axis=1)
    low, high = np.quantile(deltas, [(1 - confidence) / 2, (1 + confidence) / 2])
    p = (1 + int(np.count_nonzero(np.abs(deltas - delta) >= abs(delta)))) / (1 + n_resamples)
    return {"metric": metric, "delta": delta, "low": float(low), "high": float(high), "p_value": p,
            "n_images": len(ids), "n_resamples": n_resamples, "confidence": confidence}


def interpolate(quality: Sequence[float], values: Sequence[float], target: float) -> float | None:
    """The value at `target` quality along a curve through (quality, value) points: piecewise linear
    between the points ordered by quality (points of equal quality averaged); None outside the
    curve's range (never extrapolated). Example: (0.2, 0.9), (0.6, 0.5) at 0.5 gives 0.6."""
    by_quality: dict[float, list[float]] = {}
    for q, v in zip(quality, values, strict=True):
        by_quality.setdefault(float(q), []).append(float(v))
    xs = sorted(by_quality)
    if not xs or not xs[0] <= target <= xs[-1]:
        return None
    return float(np.interp(target, xs, [float(np.mean(by_quality[x])) for x in xs]))


def matched_quality(a: Sequence[Mapping[str, Mapping[str, float]]], b: Sequence[Mapping[str, Mapping[str, float]]],
                    metric: str, fractions: Sequence[float] = (0.25, 0.5, 0.75), n_resamples: int = 1000,
                    seed: int = 0, confidence: float = 0.95, quality: str = "cider_mean_of_k") -> dict[str, Any]:
    """`metric` of two models at matched `quality` (mean-of-k CIDEr-D), each interpolated along its own
    curve (`a`, `b`: one per-image record per point of its sweep, `measure(...)["per_image"]`).

    The targets are `fractions` of the way through the range both curves reach (their overlap); with
    no overlap, {"reachable": False} and each curve's range. Per target: A's and B's values and A - B
    with a percentile interval from resampling the images both measured (jointly for every point of
    both curves; the target stays fixed, and a resample whose curves do not reach it is left out and
    counted)."""
    if metric not in PER_IMAGE:
        raise ValueError(f"matched {metric!r}: accepted: {', '.join(PER_IMAGE)}")
    ids = sorted(set.intersection(*(set(p) for p in (*a, *b))))
    if not ids:
        raise ValueError("matched quality: the two curves share no image")
    qa, ma, qb, mb = (np.array([[p[i][m] for i in ids] for p in curve]) for curve, m in
                      ((a, quality), (a, metric), (b, quality), (b, metric)))
    range_a = (float(qa.mean(1).min()), float(qa.mean(1).max()))
    range_b = (float(qb.mean(1).min()), float(qb.mean(1).max()))
    low, high = max(range_a[0], range_b[0]), min(range_a[1], range_b[1])
    out: dict[str, Any] = {"metric": metric, "range_a": list(range_a), "range_b": list(range_b),
                           "n_images": len(ids), "n_resamples": n_resamples, "confidence": confidence}
    if low > high:
        return {**out, "reachable": False, "targets": []}
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(ids), size=(n_resamples, len(ids)))
    curves = [x[:, draws].mean(axis=2) for x in (qa, ma, qb, mb)]  # (points, resamples) each
    targets = []
    for t in sorted({low + f * (high - low) for f in fractions}):
        va = interpolate(qa.mean(1), ma.mean(1), t)
        vb = interpolate(qb.mean(1), mb.mean(1), t)
        deltas = []
        for r in range(n_resamples):
            ra = interpolate(curves[0][:, r], curves[1][:, r], t)
            rb = interpolate(curves[2][:, r], curves[3][:, r], t)
            if ra is not None and rb is not None:
                deltas.append(ra - rb)
        iv = np.quantile(deltas, [(1 - confidence) / 2, (1 + confidence) / 2]) if deltas else (np.nan, np.nan)
        targets.append({"quality": t, "a": va, "b": vb, "delta": va - vb, "low": float(iv[0]), "high": float(iv[1]),
                        "resamples_reaching": len(deltas)})
    return {**out, "reachable": True, "targets": targets}
