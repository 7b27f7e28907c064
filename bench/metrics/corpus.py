"""Corpus BLEU-1..4 and CIDEr-D rescored cheaply for any multiset of images (the bootstrap's engine).

Both keep per-image sufficient statistics so that a resample (a vector of image counts) is scored by a
weighted sum instead of a rerun of pycocoevalcap; on all images they reproduce pycocoevalcap's `Bleu(4)`
exactly and its `Cider` up to float rounding. bench/metrics/stats.py explains how resamples use them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

MAX_N = 4  # n-gram orders of BLEU and CIDEr-D
SIGMA = 6.0  # CIDEr-D length penalty width
# pycocoevalcap's BLEU smoothing constants (keep 0/0 at 0 and avoid division by zero).
_TINY, _SMALL = 1e-15, 1e-9

Gts = Mapping[str, Sequence[str]]
Res = Mapping[str, Sequence[str] | str]

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

