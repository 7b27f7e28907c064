"""Error propagation, defined once for every paradigm, along a Levenshtein alignment of words.

Words are lower-cased alphanumeric words (`words`: punctuation dropped). Every word-level measure
below compares two word sequences through one alignment (`align`: minimum edit distance, unit costs;
among equally cheap alignments the one that puts insertions and deletions as late as possible), so
one inserted word is one change, never one per later position.

a. Quality by length: images bucketed by the mean length of their references (rounded), the same
   buckets for every model; per bucket corpus BLEU-4 and the mean of the split-level per-image
   CIDEr-D, each with a 95% bootstrap interval over the bucket's images (LaDiC's figure 2b).

b. Per-position accuracy against the best-aligned reference R (the one at the smallest word edit
   distance): position p of R is a hit when the alignment matches R[p] with an equal word.
   Example: R = "a red circle on the left", caption "there is a red circle on the left":
   two insertions, then six matches: accuracy 6/6 at every position, where comparing by index
   would give 0/6. Teacher-forced accuracy (autoregressive models, `teacher_forced_words`) is on
   the same R positions; the exposure gap at p is teacher-forced minus free-running accuracy.
   Example: R = "a red circle", caption "a blue circle", teacher forcing right on all three:
   free-running 1, 0, 1; gap 0, 1, 0.

c. Error injection at word k of the uninjected caption O with a wrong word w; I is the caption
   generated after the injection. `injection_effect(O, I, k, w)` aligns O with I where the edit of
   O[k] itself (substituted or deleted) is free, and counts every other edit:
   - changed_before / changed_after: edits at O positions before / after k (an insertion counts
     before k when it sits in front of O[k], after k otherwise);
   - survived: w is a word of I (wrong words are absent from the image's references and from O, so
     an occurrence can only come from the injection; for the control, O[k] is still a word of I).
   Examples with O = "a red circle on the left", k = 1, w = "blue":
     I = "a blue circle on the left"         -> before 0, after 0, survived
     I = "a blue big circle on the left"     -> after 1 (one inserted word), survived
     I = "a red circle on the left"          -> 0 and 0, not survived (repaired)
     I = "a circle on the left"              -> 0 and 0, not survived (word k dropped, free)
     I = "the blue circle on the left"       -> before 1, survived
     I = "a blue square at the left"         -> after 2, survived
   Like for like across models (`role_slots`, `draw_role_words`): a slot is a word of the image's
   references that has a role in a word-class table (the task's own, e.g. colour and shape on shapes,
   else `noun_table` of the training captions); its wrong words are other words of the same role that
   no reference of the image uses, drawn with a seed keyed by (image, slot word). They depend on the
   references alone, so every model gets the same wrong words at the same slot; a model is injected at
   a slot where its caption says the slot's word (at that word's first occurrence, k), and the slots
   its caption lacks are counted as not covered.
   Quality (`propagation_quality`), corpus CIDEr-D and BLEU-4 of four caption sets on the same units
   (one unit per injection): O, I, the model-free substitution S (O with only O[k] replaced by w) and
   the control C (the right word O[k] through the same injection path). drop = Q(O) - Q(I);
   substitution drop = Q(O) - Q(S) (what the wrong word costs by itself); control drop = Q(O) - Q(C)
   (the probe's own noise); propagation = drop - substitution drop - control drop = Q(S) + Q(C) -
   Q(O) - Q(I), what the model's continuation loses beyond the substituted word. Example: O scores
   1.0, S 0.8, C 1.0, I 0.6: drop 0.4, substitution drop 0.2, propagation 0.2. Intervals: percentile
   bootstrap over images (an image's injections move together).

d. Repetition rate: the share of words equal to the word before them, on raw output (before any
   de-duplication; `caption_raw`).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from bench.api import WORD, words  # noqa: F401 - the contract's word split (bench/api.py), re-exported
from bench.metrics.quality import ERRPROP_METRICS

#: Function words never drawn as wrong words (a wrong word should change what a caption says).
STOPWORDS = frozenset(
    "a an the and or but of in on at to from with without by for as is are was were be been being "
    "there here this that these those it its it's they them their he she his her we you i one two "
    "some any each other another into onto over under near next up down out off than then very".split())

# (kind, i, j): "equal" | "sub" | "del" (O[i] dropped) | "ins" (I[j] added before O[i])
Op = tuple[str, int, int]


def _table(a: Sequence[str], b: Sequence[str], free: int | None) -> list[list[int]]:
    d = [[j for j in range(len(b) + 1)]]
    for i, x in enumerate(a, 1):
        gratis = i - 1 == free
        row = [d[-1][0] + (0 if gratis else 1)]
        for j, y in enumerate(b, 1):
            row.append(min(d[-1][j] + (0 if gratis else 1), row[j - 1] + 1,
                           d[-1][j - 1] + (0 if x == y or gratis else 1)))
        d.append(row)
    return d


def align(a: Sequence[str], b: Sequence[str], free: int | None = None) -> list[Op]:
    """A minimum-cost alignment of `a` onto `b` (unit costs; editing a[free] costs nothing).

    Traced back from the end preferring insertions, then deletions, then the diagonal, so among
    alignments of equal cost indels sit as late as possible (an autoregressive continuation never
    shows an edit inside the forced prefix when one after it explains the change as well).
    """
    d = _table(a, b, free)
    ops: list[Op] = []
    i, j = len(a), len(b)
    while i or j:
        cost = 0 if i - 1 == free else 1
        if j and d[i][j] == d[i][j - 1] + 1:
            ops.append(("ins", i, j - 1))
            j -= 1
        elif i and d[i][j] == d[i - 1][j] + cost:
            ops.append(("del", i - 1, j))
            i -= 1
        else:
            ops.append(("equal" if a[i - 1] == b[j - 1] else "sub", i - 1, j - 1))
            i, j = i - 1, j - 1
    return ops[::-1]


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    return _table(a, b, None)[-1][-1]


def best_aligned(caption: list[str], references: Sequence[list[str]]) -> list[str]:
    """The reference at the smallest word edit distance (the first on ties)."""
    return min(references, key=lambda ref: edit_distance(caption, ref))


def aligned_hits(caption: Sequence[str], reference: Sequence[str]) -> list[bool]:
    """Per position of `reference`: is it matched by an equal word of `caption` in the alignment?"""
    hits = [False] * len(reference)
    for kind, i, _ in align(reference, caption):
        if kind == "equal":
            hits[i] = True
    return hits


def injection_effect(original: Sequence[str], injected: Sequence[str], position: int,
                     wrong: str) -> dict[str, Any]:
    """Edits outside `position` (before / after it) and whether `wrong` survived there (docstring c)."""
    before = after = 0
    for kind, i, _ in align(original, injected, free=position):
        if kind == "equal" or (i == position and kind != "ins"):
            continue  # a match, or the free edit of word k itself
        if i < position or (kind == "ins" and i == position):
            before += 1
        else:
            after += 1
    return {"changed_before": before, "changed_after": after, "survived": wrong in injected}


def content_words(captions: Iterable[str], min_count: int = 2) -> list[str]:
    """Distinct non-function words seen at least `min_count` times, sorted (the wrong-word pool)."""
    counts = Counter(w for c in captions for w in words(c) if w not in STOPWORDS and not w.isdigit())
    return sorted(w for w, n in counts.items() if n >= min_count)


def draw_wrong_words(pool: Sequence[str], caption: Sequence[str], n: int, seed: int, key: str) -> list[str]:
    """`n` distinct words of `pool` absent from `caption`, uniformly, seeded by (seed, key, caption):
    reproducible, independent of batch and order. Fewer when the pool is smaller."""
    absent = set(caption)
    candidates = [w for w in pool if w not in absent]
    rng = random.Random(f"{seed}|{key}|{' '.join(caption)}")
    return rng.sample(candidates, min(n, len(candidates)))


#: nouns of captions are mostly followed by one of these, or end the caption (besides STOPWORDS).
_NOUN_FOLLOWERS = frozenset("is are sitting standing with holding".split())


def noun_table(captions: Iterable[str], min_count: int = 2) -> dict[str, str]:
    """Word -> "noun" for the nouns of English captions, a word-class table built from the captions alone.

    A heuristic (no tagger ships offline): a content word (not a STOPWORD, not a number, seen at least
    `min_count` times) that does not end in "ing" (captions' verbs are mostly participles) and that, in
    at least half of its occurrences, ends the caption or is followed by a function word or an "-ing"
    word: "a man riding a wave on a board" makes "man", "wave" and "board" nouns, not "riding"; an
    adjective is mostly followed by its noun ("red car") and is not one.
    """
    seen: Counter = Counter()
    boundary: Counter = Counter()
    for caption in captions:
        w = words(caption)
        for n, word in enumerate(w):
            if word in STOPWORDS or word.isdigit() or word.endswith("ing"):
                continue
            seen[word] += 1
            after = w[n + 1] if n + 1 < len(w) else None
            boundary[word] += after is None or after in STOPWORDS or after in _NOUN_FOLLOWERS or after.endswith("ing")
    return {w: "noun" for w, n in seen.items() if n >= min_count and 2 * boundary[w] >= n}


def role_slots(references: Sequence[str], classes: Mapping[str, str]) -> list[str]:
    """The slots of an image: distinct words of its references that have a role in `classes`, in the
    order they first occur (reference by reference, word by word)."""
    return list(dict.fromkeys(w for r in references for w in words(r) if w in classes))


def draw_role_words(classes: Mapping[str, str], slot: str, references: Sequence[str], n: int, seed: int,
                    image_id: str) -> list[str]:
    """`n` distinct wrong words for `slot` of an image: words of the slot's role that no reference of
    the image uses, uniformly, seeded by (seed, image, slot word): the same for every model. Fewer when
    the role has fewer such words."""
    used = {w for r in references for w in words(r)}
    candidates = sorted(w for w, role in classes.items() if role == classes[slot] and w not in used)
    rng = random.Random(f"{seed}|{image_id}|{slot}")
    return rng.sample(candidates, min(n, len(candidates)))


def substituted(caption: Sequence[str], position: int, wrong: str) -> list[str]:
    """The caption with only word `position` replaced: the model-free substitution control."""
    return [*caption[:position], wrong, *caption[position + 1:]]


#: the four caption sets of `propagation_quality`, in order
SETS = ("uninjected", "injected", "substituted", "control")
QUALITY = ERRPROP_METRICS  # CIDEr, BLEU-4


def propagation_quality(references: Mapping[str, Sequence[str]], units: Sequence[tuple[str, str, str, str, str]],
                        n_resamples: int, seed: int = 0, confidence: float = 0.95,
                        images: Sequence[str] | None = None) -> dict[str, Any]:
    """Corpus CIDEr-D and BLEU-4 of the units' (image_id, O, I, S, C) caption sets and the drops of
    docstring c, with percentile intervals from resampling `images` (default: the units' images; the
    errprop phase passes all its probe images, so that every seed and model draws the same multisets
    and seeds combine resample by resample). All units of a drawn image count as often as it is drawn;
    a resample that draws no image with a unit is left out. Per metric: the four scores and, for
    "drop", "substitution_drop", "control_drop", "propagation", {value, low, high} and the resampled
    values ("samples", null where left out)."""
    import numpy as np

    from bench.metrics.corpus import _Bleu, _Cider

    if not units:
        raise ValueError("propagation_quality: no injection to score")
    images = sorted({u[0] for u in units}) if images is None else list(images)
    missing = {u[0] for u in units} - set(images)
    if missing:
        raise ValueError(f"propagation_quality: units of images not among `images`: {sorted(missing)[:3]}")
    index = np.array([images.index(u[0]) for u in units])
    ids = [f"{u[0]}#{n}" for n, u in enumerate(units)]
    gts = {uid: [" ".join(words(r)) for r in references[u[0]]] for uid, u in zip(ids, units, strict=True)}
    hyps = [{uid: [" ".join(words(u[j]))] for uid, u in zip(ids, units, strict=True)} for j in range(1, 5)]
    cider, bleus = _Cider(gts, hyps, ids), [_Bleu(gts, h, ids) for h in hyps]

    def score(counts: np.ndarray) -> dict[str, np.ndarray]:  # (R, units) -> metric: (R, 4 sets)
        return {"CIDEr": cider.score(counts), "BLEU-4": np.stack([b.score(counts)[:, 3] for b in bleus], axis=1)}

    point = score(np.ones((1, len(units))))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(images), size=(n_resamples, len(images)))
    counts = np.stack([np.bincount(d, minlength=len(images)) for d in draws]).astype(float)[:, index]
    kept = counts.sum(axis=1) > 0
    samples = {m: np.full((n_resamples, len(SETS)), np.nan) for m in QUALITY}
    if kept.any():
        for m, v in score(counts[kept]).items():
            samples[m][kept] = v
    q = [(1 - confidence) / 2, (1 + confidence) / 2]
    out: dict[str, Any] = {"n_images": len(images), "n_units": len(units), "n_resamples": n_resamples,
                           "confidence": confidence}
    for metric in QUALITY:
        row: dict[str, Any] = {name: float(point[metric][0, j]) for j, name in enumerate(SETS)}
        for name, (a, b) in {"drop": ((0,), (1,)), "substitution_drop": ((0,), (2,)), "control_drop": ((0,), (3,)),
                             "propagation": ((2, 3), (0, 1))}.items():
            value = float(sum(point[metric][0, j] for j in a) - sum(point[metric][0, j] for j in b))
            resampled = sum(samples[metric][:, j] for j in a) - sum(samples[metric][:, j] for j in b)
            low, high = np.nanquantile(resampled, q) if kept.any() else (value, value)
            row[name] = {"value": value, "low": float(low), "high": float(high),
                         "samples": [None if np.isnan(v) else round(float(v), 6) for v in resampled]}
        out[metric] = row
    return out


def length_buckets(references: dict[str, list[str]], bucket_of: Callable[[float], int] = round) -> dict[str, int]:
    """image_id -> bucket: the mean reference length in words (rounded)."""
    return {i: bucket_of(sum(len(words(r)) for r in refs) / len(refs)) for i, refs in references.items()}


def quality_by_length(captions: dict[str, str], references: dict[str, list[str]],
                      per_image_cider: dict[str, float], score: Callable[[list[str]], dict[str, Any]],
                      min_images: int = 5) -> list[dict[str, Any]]:
    """Rows per length bucket with at least `min_images` images: `score(image_ids)` gives the bucket's
    BLEU-4 and CIDEr entries (values with intervals); CIDEr is the mean of `per_image_cider`."""
    buckets: dict[int, list[str]] = {}
    for image_id, bucket in length_buckets({i: references[i] for i in captions}).items():
        buckets.setdefault(bucket, []).append(image_id)
    rows = []
    for bucket in sorted(buckets):
        ids = sorted(buckets[bucket])
        if len(ids) >= min_images:
            rows.append({"length": bucket, "images": len(ids),
                         "CIDEr": sum(per_image_cider[i] for i in ids) / len(ids), **score(ids)})
    return rows


def position_accuracy(hits: Sequence[Sequence[bool]]) -> list[dict[str, Any]]:
    """Accuracy per position from per-caption hit lists (a position counts where the list reaches it)."""
    rows = []
    longest = max((len(h) for h in hits), default=0)
    for k in range(longest):
        column = [h[k] for h in hits if len(h) > k]
        rows.append({"position": k, "accuracy": sum(column) / len(column), "count": len(column)})
    return rows


def free_running_hits(captions: dict[str, str], references: dict[str, list[str]]) -> dict[str, list[bool]]:
    """Per image, per position of the best-aligned reference: is it matched in the alignment?"""
    out = {}
    for image_id, caption in captions.items():
        gen = words(caption)
        out[image_id] = aligned_hits(gen, best_aligned(gen, [words(r) for r in references[image_id]]))
    return out


def exposure_gap(free: list[dict[str, Any]], forced: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_position = {r["position"]: r for r in free}
    return [{"position": r["position"], "teacher_forced": r["accuracy"],
             "free_running": by_position[r["position"]]["accuracy"],
             "gap": r["accuracy"] - by_position[r["position"]]["accuracy"], "count": r["count"]}
            for r in forced if r["position"] in by_position]


def repetition_rate(captions: Sequence[str]) -> float:
    """Share of words equal to the word before them."""
    pairs = repeats = 0
    for caption in captions:
        w = words(caption)
        pairs += max(0, len(w) - 1)
        repeats += sum(a == b for a, b in zip(w, w[1:], strict=False))
    return repeats / pairs if pairs else 0.0
