"""Error propagation, defined the same way for both paradigms so the curves share axes.

All positions are word positions (lower-cased alphanumeric words; punctuation dropped).

a. quality by length: images bucketed by the length of their references (mean words, rounded), the
   same buckets for every model, with BLEU-4 (corpus-level within the bucket) and CIDEr (mean of the
   split-level per-image CIDEr-D) per bucket; LaDiC's figure 2b;
b. per-position word accuracy against the best-aligned reference (the one at the smallest word edit
   distance): free-running for every model, and teacher-forced for autoregressive ones; the exposure
   gap is teacher-forced minus free-running accuracy at each position;
c. error injection: autoregressive, the greedy caption's word k is replaced by a wrong word and the
   model continues from there: how many later words change, and the CIDEr drop; diffusion, the latent
   of position k is overwritten with a wrong word's latent part-way through sampling: whether k
   recovers, and how many other positions change;
d. repetition rate: the share of words equal to their predecessor, before any de-duplication.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def best_aligned(caption: list[str], references: Sequence[list[str]]) -> list[str]:
    """The reference at the smallest word edit distance (the first on ties)."""
    return min(references, key=lambda ref: edit_distance(caption, ref))


def length_buckets(references: dict[str, list[str]], bucket_of: Callable[[float], int] = round) -> dict[str, int]:
    """image_id -> bucket: the mean reference length in words (rounded)."""
    return {i: bucket_of(sum(len(words(r)) for r in refs) / len(refs)) for i, refs in references.items()}


def quality_by_length(captions: dict[str, str], references: dict[str, list[str]],
                      per_image_cider: dict[str, float], bleu4: Callable[[list[str]], float],
                      min_images: int = 5) -> list[dict[str, Any]]:
    """Rows per length bucket with at least `min_images` images: BLEU-4 (`bleu4(image_ids)`, corpus
    level within the bucket) and mean per-image CIDEr-D."""
    buckets: dict[int, list[str]] = {}
    for image_id, bucket in length_buckets({i: references[i] for i in captions}).items():
        buckets.setdefault(bucket, []).append(image_id)
    rows = []
    for bucket in sorted(buckets):
        ids = sorted(buckets[bucket])
        if len(ids) >= min_images:
            rows.append({"length": bucket, "images": len(ids), "BLEU-4": bleu4(ids),
                         "CIDEr": sum(per_image_cider[i] for i in ids) / len(ids)})
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
    """Per image, per position of the best-aligned reference: does the generated word match?"""
    out = {}
    for image_id, caption in captions.items():
        gen = words(caption)
        ref = best_aligned(gen, [words(r) for r in references[image_id]])
        out[image_id] = [k < len(gen) and gen[k] == ref[k] for k in range(len(ref))]
    return out


def exposure_gap(free: list[dict[str, Any]], forced: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_position = {r["position"]: r for r in free}
    return [{"position": r["position"], "teacher_forced": r["accuracy"],
             "free_running": by_position[r["position"]]["accuracy"],
             "gap": r["accuracy"] - by_position[r["position"]]["accuracy"], "count": r["count"]}
            for r in forced if r["position"] in by_position]


def wrong_word(original: str, vocabulary: Sequence[str]) -> str:
    """A deterministic wrong word: the first vocabulary word that differs from the original."""
    return next(w for w in vocabulary if w != original)


def changes_after(original: list[str], injected: list[str], position: int) -> int:
    """Words after `position` that differ (a length difference counts as changed words)."""
    tail_a, tail_b = original[position + 1:], injected[position + 1:]
    return sum(a != b for a, b in zip(tail_a, tail_b, strict=False)) + abs(len(tail_a) - len(tail_b))


def changes_elsewhere(original: list[str], injected: list[str], position: int) -> int:
    """Positions other than `position` that differ, over the longer caption."""
    length = max(len(original), len(injected))
    pad_a, pad_b = original + [""] * (length - len(original)), injected + [""] * (length - len(injected))
    return sum(a != b for k, (a, b) in enumerate(zip(pad_a, pad_b, strict=True)) if k != position)


def repetition_rate(captions: Sequence[str]) -> float:
    """Share of words equal to the word before them."""
    pairs = repeats = 0
    for caption in captions:
        w = words(caption)
        pairs += max(0, len(w) - 1)
        repeats += sum(a == b for a, b in zip(w, w[1:], strict=False))
    return repeats / pairs if pairs else 0.0
