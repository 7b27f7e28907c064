"""The measurement of `bench device-check`: every model through the protocol its module docstring
states (bench/device_check.py), every eager pass before any compiled one, the outputs written after
every model pass; the timing itself is bench/device_timing.py, the environment bench/device_env.py."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.device_timing import Run, Timer, blocks, latency_block, now, sentinel, sentinel_record

COCO_TRAIN_PAIRS = 113_287 * 5  # Karpathy train images x 5 captions; each caption is a training sample


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


def build(check: Any, device: str):
    """The captioner of `check`, prepared on synthetic captions, on `device`, in eval mode."""
    from bench.api import Sample
    from bench.registry import captioners, create_captioner

    if check.name not in captioners:
        raise LookupError(f"{check.name} is not registered in this checkout")
    model = create_captioner(check.name, **check.overrides).to(device)
    captions = synthetic_captions(10_000, 10_000)
    samples = [Sample(f"s{i}", Path("unused.jpg"), tuple(captions[5 * i: 5 * i + 5]))
               for i in range(len(captions) // 5)]
    model.prepare(samples)
    model.to(device)
    if model.trainable:
        model.module.eval()
    return model


def throughput(model, pixels, dtype: str, max_batch: int, timer: Timer) -> list[dict[str, Any]]:
    """Images/s of the default decoding, eager stack, at batch 64 and doubling until out of memory."""
    import torch

    model.set_stack(dtype, "eager")
    decoding = model.default_decoding()
    rows, size = [], min(64, max_batch)
    while size <= max_batch:
        batch = pixels[torch.arange(size) % len(pixels)]
        try:
            with torch.inference_mode():
                model.generate(batch, **decoding)  # warm-up at this batch size
                timing, _ = timer(lambda batch=batch: model.generate(batch, **decoding))
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            rows.append({"batch_size": size, "error": "out of memory"})
            break
        rows.append({"batch_size": size, "seconds": timing["wall_s"], "cuda_seconds": timing["cuda_s"],
                     "t": timing["t"], "images_per_s": size / timing["wall_s"]})
        size *= 2
    return rows


def training_step(model, check: Any, pixel: Any, device: str, timer: Timer) -> dict[str, Any]:
    """One AdamW step at the suite's batch size, fp32 weights under bf16 autocast (how training runs):
    seconds (median of 3 after a warm-up) and peak memory."""
    import torch

    model.set_stack("fp32", "eager")
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
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
            loss = model.training_loss(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    try:
        step()  # warm-up (optimizer state allocated here)
        times = [timer(step)[0]["wall_s"] for _ in range(3)]
    finally:
        module.eval()
    seconds = statistics.median(times)
    steps_per_epoch = -(-COCO_TRAIN_PAIRS // check.train_batch)
    return {"batch_size": check.train_batch, "seconds": seconds, "autocast": "bf16",
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
            "trainable_parameters": sum(p.numel() for p in params),
            "coco_epoch_hours": seconds * steps_per_epoch / 3600, "epochs": check.epochs,
            "schedule_hours": seconds * steps_per_epoch * check.epochs / 3600}


def _prepared(check: Any, run: Run, builder: Callable) -> tuple[Any, Any, Any]:
    """The model (seeded: the compiled pass rebuilds the same weights), one image and `images` noisy copies."""
    import torch
    from PIL import Image

    torch.manual_seed(0)
    model = builder(check, run.device)
    pixel = model.preprocess(Image.new("RGB", (256, 256), (120, 90, 60)))
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(run.protocol.images, *pixel.shape, generator=generator)
    return model, pixel, (pixel[None] + 0.5 * noise).to(run.device)


def _guarded(out: dict[str, Any], part: str, fn: Callable[[], Any], run: Run) -> Any:
    try:
        return fn()
    except Exception as err:  # noqa: BLE001 - one part failing must not cost the others
        out["errors"][part] = f"{type(err).__name__}: {err}"
        run.log(f"  {out['model']} {part}: FAILED {type(err).__name__}: {err}")
        return None


def _time_blocks(out: dict[str, Any], model, check: Any, chosen: list[tuple[str, str]], pixels,
                 run: Run) -> None:
    for dtype, stack in chosen:
        done = _guarded(out, f"latency {dtype} {stack}",
                        lambda d=dtype, s=stack: latency_block(model, check, d, s, pixels, run), run)
        if done is not None:
            out["blocks"].append(done[0])
            out["latency"] += done[1]


def _point(out: dict[str, Any], model, at: str, pixels, run: Run) -> None:
    point = _guarded(out, f"sentinel {at}", lambda: sentinel(model, out["model"], at, pixels, run), run)
    if point is not None:
        out["sentinel"]["points"].append(point)


def eager_pass(check: Any, run: Run, builder: Callable | None = None) -> tuple[dict[str, Any], list]:
    """Steps 1-3 of the protocol (module docstring) for one model: (its results, the non-eager blocks
    left for `compiled_pass`). A failing part is recorded with its error, the rest stands."""
    started = now()
    try:
        model, pixel, pixels = _prepared(check, run, builder or build)
    except Exception as err:  # noqa: BLE001 - one model failing to build must not cost the others
        run.log(f"  {check.name} build: FAILED {type(err).__name__}: {err}")
        return {"model": check.name, "error": f"build: {type(err).__name__}: {err}"}, []
    timed, unsupported = blocks(model, run.protocol)
    out: dict[str, Any] = {
        "model": check.name, "class": type(model).__name__, "paradigm": model.paradigm,
        "compare": list(check.compare),
        "parameters": sum(p.numel() for p in model.module.parameters()) if model.trainable else None,
        "default_decoding": model.default_decoding(),  # what the sentinel and throughput run
        "stacks": list(model.stacks), "dtypes": list(model.dtypes), "unsupported": unsupported,
        "blocks": [], "latency": [], "throughput": {}, "compiled": [], "errors": {},
        "sentinel": {"setting": model.default_decoding(), "points": []}, "gpu_samples": {}}
    for u in unsupported:
        run.log(f"  {check.name} {u['dtype']} {u['stack']}: unsupported ({u['reason']})")
    _point(out, model, "start", pixels, run)
    _time_blocks(out, model, check, [b for b in timed if b[1] == "eager"], pixels, run)
    _point(out, model, "middle", pixels, run)
    for dtype in [d for d, s in timed if s == "eager"]:
        out["throughput"][dtype] = _guarded(out, f"throughput {dtype}", lambda d=dtype: throughput(
            model, pixels, d, run.protocol.max_batch, run.timer), run)
    if model.trainable:
        out["training"] = _guarded(out, "training step", lambda: training_step(
            model, check, pixel, run.device, run.timer), run)
    later = [b for b in timed if b[1] != "eager"]
    if not later:
        _point(out, model, "end", pixels, run)
    model.set_stack("fp32", "eager")
    out["gpu_samples"]["eager"] = run.sampler.window(started, now())
    out["seconds"] = now() - started
    _finish(out)
    return out, later


def compiled_pass(check: Any, out: dict[str, Any], later: list[tuple[str, str]], run: Run,
                  builder: Callable | None = None) -> None:
    """Steps 4-5 of the protocol for one model, into its results `out` (after every eager pass)."""
    started = now()
    try:
        model, _, pixels = _prepared(check, run, builder or build)
    except Exception as err:  # noqa: BLE001 - the eager results stand
        out["errors"]["compiled pass build"] = f"{type(err).__name__}: {err}"
        return
    _time_blocks(out, model, check, later, pixels, run)
    _point(out, model, "end", pixels, run)
    model.set_stack("fp32", "eager")
    out["gpu_samples"]["compiled"] = run.sampler.window(started, now())
    out["seconds"] += now() - started
    _finish(out)


def _finish(out: dict[str, Any]) -> None:
    """The figures derived from the rows: the sentinel's drift, identical captions, compiled vs eager."""
    out["sentinel"] = sentinel_record(out["sentinel"]["setting"], out["sentinel"]["points"])
    out["identical"] = _identical(out["latency"], out.get("compare", ()))
    eager = {json.dumps([r["dtype"], r["setting"]], sort_keys=True): r for r in out["latency"]
             if r["stack"] == "eager"}
    out["compiled"] = []
    for r in out["latency"]:
        before = eager.get(json.dumps([r["dtype"], r["setting"]], sort_keys=True))
        if r["stack"] != "eager" and before is not None:
            out["compiled"].append({"dtype": r["dtype"], "stack": r["stack"], "setting": r["setting"],
                                    "eager_s": before["seconds"], "compiled_s": r["seconds"],
                                    "identical": before["captions"] == r["captions"]})


def _identical(rows: list[dict[str, Any]], knobs) -> list[dict[str, Any]]:
    """For each compared knob: do all its values give the same captions (same dtype, stack and other
    settings)?"""
    out = []
    for knob in knobs:
        groups: dict[str, list[list[str]]] = {}
        for r in rows:
            key = json.dumps([r["dtype"], r["stack"], {k: v for k, v in r["setting"].items() if k != knob}],
                             sort_keys=True)
            groups.setdefault(key, []).append(r["captions"])
        for key, captions in groups.items():
            dtype, stack, setting = json.loads(key)
            if len(captions) > 1:
                out.append({"knob": knob, "dtype": dtype, "stack": stack, "setting": setting,
                            "identical": all(c == captions[0] for c in captions)})
    return out


def measure(checks: list[Any], device: str, protocol: Any, out: Path, header: dict[str, Any],
            builder: Callable | None = None, log: Callable[[str], None] = print,
            clock: Callable[[], float] = now) -> tuple[dict[str, Any], list[Path]]:
    """Every check's model by the protocol, every eager pass before any compiled one; the outputs
    written after every model pass (a run stopped by a time limit keeps what it measured)."""
    from bench.device_env import GpuSampler, environment, snapshot
    from bench.device_report import write_outputs

    sampler, nv, handle = GpuSampler.for_device(device)
    results = {"environment": environment(device, nv, handle, sampler.reason), **header,
               "clock": "seconds since the run started (perf_counter)", "models": []}
    run = Run(device, protocol, Timer(device, clock), sampler, lambda: snapshot(nv, handle, sampler.reason), log)

    def written() -> list[Path]:
        if device.split(":")[0] == "cuda":
            import torch

            torch.cuda.empty_cache()  # the model is gone: its memory goes back before the next one
        results["environment"]["end"] = run.snapshot()
        return write_outputs(results, out)

    paths: list[Path] = []
    later = []
    sampler.start()
    try:
        for check in checks:
            log(f"{check.name}:")
            entry, blocks_left = eager_pass(check, run, builder)
            results["models"].append(entry)
            later += [(check, entry, blocks_left)] if blocks_left else []
            paths = written()
        for check, entry, blocks_left in later:
            log(f"{check.name} ({', '.join(sorted({s for _, s in blocks_left}))}):")
            compiled_pass(check, entry, blocks_left, run, builder)
            paths = written()
    finally:
        sampler.stop()
    return results, paths
