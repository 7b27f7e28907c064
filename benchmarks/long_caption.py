"""Time the scoring of a caption set in which one caption runs to thousands of words.

    python benchmarks/long_caption.py [--words 5000] [--images 150] [--bootstrap 1000]

Builds a shapes test split of `--images` images under `--root`, captions every image with its own first
reference but one, which gets `--words` words drawn from the references' vocabulary, and prints the
seconds of each step against the same set without the long caption: the PTB tokenizer, each
pycocoevalcap scorer (METEOR's includes starting its jar, once per run), and the bootstrap of the
intervals (`--bootstrap` resamples, corpus metrics recomputed per resample). SPICE is timed only where its
CoreNLP jars are present. Nothing is written outside `--root`.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=int, default=5000)
    parser.add_argument("--images", type=int, default=150)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--root", default=".cache/shapes-long-caption", help="where the shapes images go")
    args = parser.parse_args()

    from tasks.shapes import ShapesTask

    task = ShapesTask(seed=0, train=10, val=10, test=args.images, root=Path(args.root))
    references = task.references("test")
    plain = {i: refs[0] for i, refs in references.items()}
    vocabulary = sorted({w for refs in references.values() for r in refs for w in r.split()})
    first = sorted(plain)[0]
    rng = random.Random(0)
    long = {**plain, first: " ".join(rng.choice(vocabulary) for _ in range(args.words))}
    print(f"{args.images} images; one caption of {args.words} words (image {first}); seconds per step:")
    print("| step | without | with |\n|---|---|---|")
    for step, (a, b) in zip(_STEPS, zip(_timed(plain, references, args.bootstrap),
                                        _timed(long, references, args.bootstrap), strict=True), strict=True):
        print(f"| {step} | {_cell(a)} | {_cell(b)} |")


def _cell(seconds: float) -> str:
    return "not run (no CoreNLP jars)" if seconds != seconds else f"{seconds:.2f}"


_STEPS = ("PTB tokenizer", "BLEU-1..4", "METEOR (with its jar's start)", "ROUGE-L", "CIDEr", "SPICE",
          "bootstrap")


def _timed(captions: dict[str, str], references: dict[str, list[str]], bootstrap: int) -> list[float]:
    from bench.metrics import meteor, quality
    from bench.metrics.ptb import tokenize
    from bench.metrics.stats import bootstrap_ci

    meteor.close_pool()  # each run pays its jar's start, as a job does
    seconds = []
    with quality.english_jvm():
        start = time.perf_counter()
        gts = tokenize(references, "reference")
        res = tokenize({i: [c] for i, c in captions.items()}, "caption")
        seconds.append(time.perf_counter() - start)
        for _names, scorer in quality._scorers(quality.METRICS):
            start = time.perf_counter()
            try:
                scorer({i: gts[i] for i in res}, res)
            except quality.SpiceUnavailable:
                seconds.append(float("nan"))
                continue
            seconds.append(time.perf_counter() - start)
    scores = quality.score_captions(captions, references, quality.INTERVAL_METRICS)
    start = time.perf_counter()
    bootstrap_ci(*scores.tokenized, metrics=quality.INTERVAL_METRICS, per_image=scores.per_image,
                 corpus=scores.corpus, n_resamples=bootstrap, seed=0)
    seconds.append(time.perf_counter() - start)
    return seconds


if __name__ == "__main__":
    main()
