"""Time the CPU training loop of one captioner on the shapes task, epoch by epoch (optionally profiled).

    python benchmarks/train_epoch.py --model mdm-mini --images 120 --epochs 2 --threads 1 [--profile 25]

Builds a shapes task of `--images` training images under `--root`, trains `--model` with the suite's
batch size for `--epochs` epochs in this process and prints each epoch's seconds (the first epoch also
pays one-off work such as LaDiC's caption-latent cache). `--profile N` prints cProfile's N most expensive
calls by cumulative time. Nothing is written outside `--root` and a temporary work folder.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mdm-mini")
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (a suite job: its cpus)")
    parser.add_argument("--profile", type=int, default=0, help="print the N most expensive calls")
    parser.add_argument("--root", default=".cache/shapes-timing", help="where the shapes images go")
    args = parser.parse_args()

    import torch

    from bench.config import TrainConfig
    from bench.registry import create_captioner
    from bench.train import train
    from tasks.shapes import ShapesTask

    torch.set_num_threads(args.threads)
    task = ShapesTask(seed=0, train=args.images, val=10, test=10, root=Path(args.root))
    task.ensure_files()
    samples = task.samples("train")
    model = create_captioner(args.model)
    model.prepare(samples)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=1e-3)
    profile = cProfile.Profile() if args.profile else None
    started = time.monotonic()
    ends: list[float] = []  # when each epoch's closing line was logged

    def log(line: str) -> None:
        if line.startswith("epoch ") and ": loss " in line:
            ends.append(time.monotonic())

    with tempfile.TemporaryDirectory(prefix="train-epoch-") as work:
        if profile:
            profile.enable()
        train(model, samples, cfg, Path(work), log=log)
        if profile:
            profile.disable()
    seconds = [round(b - a, 1) for a, b in zip([started, *ends], ends, strict=False)]
    print(f"{args.model}: {args.images} images, batch {args.batch_size}, {args.threads} thread(s): "
          f"epoch seconds {seconds}, total {time.monotonic() - started:.1f}s")
    if profile:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(args.profile)


if __name__ == "__main__":
    main()
