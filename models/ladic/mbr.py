"""Minimum Bayes Risk selection over sampled candidate captions (Diffusion-LM, section 5.2).

The candidate with the highest mean similarity to the other candidates of its image wins; ties go to
the lowest index, so the choice is deterministic. Similarity: smoothed sentence BLEU-4 (default) or
unigram F1. Pure Python: candidates are a handful of short strings per image.
"""

from __future__ import annotations

import math
from collections import Counter


def _ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i: i + n]) for i in range(len(words) - n + 1))


def sentence_bleu(hypothesis: str, reference: str, max_n: int = 4) -> float:
    """BLEU of one hypothesis against one reference, add-one smoothing for n > 1 (Lin & Och 2004)."""
    hyp, ref = hypothesis.split(), reference.split()
    if not hyp or not ref:
        return 0.0
    log_precision = 0.0
    for n in range(1, max_n + 1):
        h, r = _ngrams(hyp, n), _ngrams(ref, n)
        match, total = sum((h & r).values()), max(1, sum(h.values()))
        if n > 1:
            match, total = match + 1, total + 1
        if match == 0:
            return 0.0
        log_precision += math.log(match / total) / max_n
    brevity = min(0.0, 1.0 - len(ref) / len(hyp))
    return math.exp(brevity + log_precision)


def unigram_f1(a: str, b: str) -> float:
    x, y = a.split(), b.split()
    common = sum((Counter(x) & Counter(y)).values())
    return 0.0 if common == 0 else 2 * common / (len(x) + len(y))


SIMILARITIES = {"bleu": sentence_bleu, "unigram_f1": unigram_f1}


def mbr_index(candidates: list[str], metric: str = "bleu") -> int:
    """Index of the candidate with the highest mean similarity to the others."""
    if len(candidates) <= 1:
        return 0
    similarity = SIMILARITIES[metric]
    best, best_score = 0, -1.0
    for i, hyp in enumerate(candidates):
        score = sum(similarity(hyp, ref) for j, ref in enumerate(candidates) if j != i)
        if score > best_score + 1e-12:
            best, best_score = i, score
    return best


def mbr_select(captions: list[str], candidates: int, metric: str = "bleu") -> list[str]:
    """Pick one caption per image from image-major groups of `candidates` captions."""
    if len(captions) % candidates:
        raise ValueError(f"{len(captions)} captions are not groups of {candidates}")
    groups = [captions[i: i + candidates] for i in range(0, len(captions), candidates)]
    return [group[mbr_index(group, metric)] for group in groups]
