"""Time the suite's comparisons at COCO scale on synthetic captions, and print the time and cores used.

    python benchmarks/compare_scale.py [--images 5000] [--models 7] [--seeds 3] [--workers N] [--meteor]

Synthetic data shaped like COCO's: a Zipf vocabulary, five references per image, captions of 8-14
words that are noisy copies of a hidden sentence (each model its own noise level), per-image ROUGE-L
and SPICE scores. Models: 3 of one paradigm, 3 of
another and 1 trivial reference by default, 3 seeds each, so the pairs and the resample count are
those of bench/paired.py for such a suite. With --meteor (Java needed) METEOR is exact: real
statistics lines of 200 captions from the jar, repeated over the images (a sum of real lines), scored by
the jar per resample; without it METEOR is resampled from per-image scores. What is timed is
bench.paired.comparison_rows (resampling, seed rows, tests, Holm); the texts are generated before.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.metrics.resampling import usable_cores  # noqa: E402
from bench.paired import Model, Run, comparison_rows, count_tests, resamples_for  # noqa: E402


def synthetic(images: int, models: int, seeds: int, rng: np.random.Generator):
    vocab = np.array([f"w{k}" for k in range(3000)])
    weights = 1 / np.arange(1, len(vocab) + 1) ** 1.1
    weights /= weights.sum()

    def vary(base: list[str], p: float) -> str:
        words = [w if rng.random() > p else str(rng.choice(vocab, p=weights)) for w in base if rng.random() > p / 3]
        return " ".join(words) or "a"

    bases = [[str(w) for w in rng.choice(vocab, rng.integers(8, 15), p=weights)] for _ in range(images)]
    ids = [f"{k:06d}" for k in range(images)]
    gts = {i: [vary(b, 0.25) for _ in range(5)] for i, b in zip(ids, bases, strict=True)}
    out = []
    learned = models - 1
    for m in range(models):
        trainable = m < learned
        paradigm = ("diffusion" if m < learned // 2 else "autoregressive") if trainable else "reference"
        model = Model("coco", f"model{m}", paradigm, trainable, m, gts=gts)
        for s in range(seeds if trainable else 1):
            noise = 0.2 + 0.05 * m + 0.02 * s
            res = {i: [vary(b, noise)] for i, b in zip(ids, bases, strict=True)}
            per = {i: {"ROUGE-L": float(rng.random()), "SPICE": float(rng.random()), "METEOR": float(rng.random())}
                   for i in ids}
            corpus = dict.fromkeys(("BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "SPICE"), 0.5)
            model.runs.append(Run(f"model{m}-{s}", s, res, per, corpus, None))
        out.append(model)
    return out


def add_meteor(models: list[Model], jar) -> None:
    """Real statistics lines of the first 200 images, repeated over all images (sums stay valid)."""
    ids = list(models[0].gts)
    head = ids[:200]
    for m in models:
        for r in m.runs:
            lines = jar.stats({i: m.gts[i] for i in head}, {i: r.res[i] for i in head})
            r.meteor = {i: lines[head[k % len(head)]] for k, i in enumerate(ids)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--models", type=int, default=7)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: the usable cores)")
    parser.add_argument("--meteor", action="store_true", help="exact METEOR through the jar (Java needed)")
    args = parser.parse_args()
    models = synthetic(args.images, args.models, args.seeds, np.random.default_rng(0))
    workers = args.workers or usable_cores()
    print(f"{args.images} images, {args.models} models x {args.seeds} seeds, {count_tests(models)} tests, "
          f"{resamples_for(models)} resamples, {workers} worker process(es) on {usable_cores()} usable core(s)",
          flush=True)
    if args.meteor:
        from bench.metrics.meteor import MeteorJar

        with MeteorJar() as jar:
            add_meteor(models, jar)
            return _timed(models, jar.score, workers)
    return _timed(models, None, workers)


def _timed(models: list[Model], meteor_score, workers: int) -> int:
    import resource

    def cpu() -> float:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    started, cpu_started = time.perf_counter(), cpu()
    rows = comparison_rows(models, meteor_score, workers=workers, seeds_out=[])
    seconds, cpu_seconds = time.perf_counter() - started, cpu() - cpu_started
    # CPU seconds beside the wall time: on a shared machine the wall time also counts others' work.
    print(f"comparisons: {len(rows)} tests in {seconds:.1f} s wall, {cpu_seconds:.1f} s CPU (this process and "
          f"its workers), {workers} worker process(es) on {usable_cores()} usable core(s), "
          f"METEOR {'exact (jar)' if meteor_score else 'per-image means'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
