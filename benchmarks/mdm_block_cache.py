"""Time the masked diffusion captioner's batch-1 decoding with and without the block cache.

    python benchmarks/mdm_block_cache.py JOB_DIR [JOB_DIR ...] [--images 8] [--rounds 5] [--threads 1]

Loads each finished job's trained model (JOB_DIR/model), takes the first `--images` readable images of
the validation split and captions them one at a time (batch 1) under the model's default decoding,
with `block_cache` off and on, in alternating rounds (off, on, on, off, ...) after one warm-up caption
each, so slow drift of a shared machine falls on both alike. Prints per job the median milliseconds
per caption of each setting, their ratio, and how many of the images' captions the cache changed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def time_job(job_dir: Path, images: int, rounds: int) -> dict[str, float]:
    """Median ms per caption off/on and the count of captions the cache changed."""
    import torch

    from bench import samples
    from bench.registry import captioner_class, create_task
    from bench.results import read_json

    job = read_json(job_dir / "job.json")
    model = captioner_class(job["model"]).load(job_dir / "model")
    task = create_task(job["task_class"], **job["task_options"])
    _, pixels, _ = samples.readable(task.samples("val"), model, images)
    if pixels is None:
        raise RuntimeError(f"{job_dir}: no readable val image")
    times: dict[bool, list[float]] = {False: [], True: []}
    captions: dict[bool, list[str]] = {False: [], True: []}
    with torch.inference_mode():
        for cache in (False, True):
            model.caption(pixels[:1], block_cache=cache)  # warm-up
        for r in range(rounds):
            for cache in ((False, True) if r % 2 == 0 else (True, False)):
                out = []
                for i in range(len(pixels)):
                    start = time.perf_counter()
                    out += model.caption(pixels[i: i + 1], block_cache=cache)
                    times[cache].append(time.perf_counter() - start)
                captions[cache] = out
    off, on = (1000 * statistics.median(times[c]) for c in (False, True))
    changed = sum(a != b for a, b in zip(captions[False], captions[True], strict=True))
    return {"off_ms": off, "on_ms": on, "changed": changed, "images": len(pixels)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jobs", nargs="+", type=Path, help="finished jobs' folders (job.json, model/)")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    print("| job | no cache (ms/caption) | block cache (ms/caption) | ratio | captions changed |")
    print("|---|---|---|---|---|")
    for job in args.jobs:
        r = time_job(job, args.images, args.rounds)
        print(f"| {job.name} | {r['off_ms']:.1f} | {r['on_ms']:.1f} | {r['off_ms'] / r['on_ms']:.2f}x | "
              f"{r['changed']}/{r['images']} |", flush=True)


if __name__ == "__main__":
    main()
