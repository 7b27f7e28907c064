"""How `bench device-check` times a call, a block of settings and the sentinel (bench/device_check.py).

- `Timer`: one call timed two ways, each with its start on the run's clock (`now`): wall seconds
  (perf_counter, the device synchronised before and after, since CUDA work is asynchronous) and, on
  CUDA, the seconds between two CUDA events recorded around the call on the stream.
- `timed_rounds`: every setting of a block gets `warmup` untimed calls, then `repeats` rounds; round r
  times every setting once, in the order rotated by r (`rotation`). Timing one setting's repeats back to
  back would put any drift of the machine (clocks, temperature, another tenant) into the difference
  between settings; interleaved, a drift spreads over all of them, and no setting always runs first
  or always right after the same neighbour. Round r runs image r mod `images` for every setting, so
  the settings of a block see the same images.
- `sentinel_point` / `sentinel_record`: one fixed setting timed the same way at the start, the middle
  and the end of a model's measurements; max/min of its medians (`drift`) says how far the machine
  moved meanwhile (above `DRIFT_WARNING` the report warns that differences of that size mean nothing).

- `latency_block` and `sentinel` apply these to a captioner: one block is the decodings of one (dtype,
  stack) of the captioner's inference stacks (`blocks` lists them, eager first, and records the ones it
  does not declare as unsupported), timed under `set_stack`.

Light: nothing here imports torch until a block is timed (or a CUDA device is).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

#: max/min of the sentinel's medians above which device-check.md warns (10%: more than most of the
#: differences between settings the check is run to see).
DRIFT_WARNING = 1.10
SENTINEL_POINTS = ("start", "middle", "end")

_ORIGIN = time.perf_counter()


def now() -> float:
    """Seconds on the run's clock (since this module was imported): call timestamps and GPU samples
    share it, so a block's samples are those between its first and last call."""
    return time.perf_counter() - _ORIGIN


class Timer:
    """Times one call: {"t": start on `clock`, "wall_s", "cuda_s" (None off CUDA)} and the call's output."""

    def __init__(self, device: str, clock: Callable[[], float] = now):
        self.cuda = str(device).split(":")[0] == "cuda"
        self.clock = clock

    def _sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def __call__(self, fn: Callable[[], Any]) -> tuple[dict[str, Any], Any]:
        events = None
        self._sync()  # work queued before the call is not the call's
        if self.cuda:
            import torch

            events = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        started = self.clock()
        if events:
            events[0].record()
        out = fn()
        if events:
            events[1].record()
        self._sync()  # the call's kernels have run, not just been queued
        wall = self.clock() - started
        cuda = events[0].elapsed_time(events[1]) / 1000.0 if events else None
        return {"t": started, "wall_s": wall, "cuda_s": cuda}, out


def rotation(n: int, r: int) -> list[int]:
    """The order of round `r` over `n` settings: r mod n first, then on, wrapping round."""
    k = r % n
    return list(range(k, n)) + list(range(k))


def timed_rounds(calls: Sequence[Callable[[int], Any]], warmup: int, repeats: int, images: int,
                 timer: Timer) -> list[dict[str, Any]]:
    """Time every call (one per setting; it takes an image index) in interleaved rounds.

    Each call first gets `warmup` untimed calls (allocations, kernel selection, compilation), then
    round r (of `repeats`) times each call once in `rotation(len(calls), r)` order on image r mod
    `images`. Returns per call {"warmup", "calls": [Timer record + round, image], "outputs": {image:
    the first output for it}} (the outputs of warm-up calls count: they are the same computation)."""
    if warmup < 1:
        raise ValueError(f"warmup {warmup}: at least one warm-up call per setting is needed")
    records: list[dict[str, Any]] = [{"warmup": warmup, "calls": [], "outputs": {}} for _ in calls]
    for call, record in zip(calls, records, strict=True):
        for w in range(warmup):
            record["outputs"].setdefault(w % images, call(w % images))
    for r in range(repeats):
        image = r % images
        for i in rotation(len(calls), r):
            timing, out = timer(lambda i=i, image=image: calls[i](image))
            records[i]["calls"].append({**timing, "round": r, "image": image})
            records[i]["outputs"].setdefault(image, out)
    return records


def summarise(calls: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Median, min and max wall seconds of timed calls, and the median CUDA-event seconds (None off CUDA)."""
    wall = [c["wall_s"] for c in calls]
    cuda = [c["cuda_s"] for c in calls if c.get("cuda_s") is not None]
    return {"seconds": statistics.median(wall), "min_s": min(wall), "max_s": max(wall),
            "cuda_seconds": statistics.median(cuda) if cuda else None, "timed_calls": len(calls)}


def sentinel_point(at: str, call: Callable[[int], Any], warmup: int, repeats: int, images: int,
                   timer: Timer) -> dict[str, Any]:
    """The sentinel setting timed once more (`at`: one of SENTINEL_POINTS), as any setting is."""
    record = timed_rounds([call], warmup, repeats, images, timer)[0]
    return {"at": at, **summarise(record["calls"]), "calls": record["calls"]}


def drift(medians: Sequence[float]) -> float | None:
    """max/min of the sentinel's medians (1.0: the same at every point); None with fewer than two."""
    values = [m for m in medians if m is not None]
    if len(values) < 2 or min(values) <= 0:
        return None
    return max(values) / min(values)


def sentinel_record(setting: dict[str, Any], points: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What results.json holds about a model's sentinel: its setting, points, drift and warning flag."""
    value = drift([p["seconds"] for p in points])
    return {"setting": setting, "dtype": "fp32", "stack": "eager", "points": list(points), "drift": value,
            "warning": value is not None and value > DRIFT_WARNING}


@dataclass
class Run:
    """What the measurement of every model shares."""

    device: str
    protocol: Any  # bench.device_check.Protocol
    timer: Timer
    sampler: Any  # bench.device_env.GpuSampler
    snapshot: Callable[[], dict[str, Any]]  # load average and GPU processes now
    log: Callable[[str], None]


def settings(model, check: Any, stack: str = "eager") -> list[dict[str, Any]]:
    """The decodings timed at batch 1: the knob grid (x compared values), else forced lengths. Under a
    non-eager stack a compared knob keeps its first value: the compared knobs are loop structures
    (LaDiC's mode) and its compiled stack changes the optimized loop only, so the released code's loop
    would be eager code timed twice."""
    base = model.default_decoding()
    out: list[dict[str, Any]] = []
    for knob, values in check.grid.items():
        compared = [{name: v} for name, vs in check.compare.items() for v in vs] or [{}]
        for value in values:
            out += [{**base, knob: value, **extra} for extra in (compared if stack == "eager" else compared[:1])]
    for length in check.lengths:
        out += [{**base, **model.forced_length_decoding(length), "num_beams": b} for b in check.beams]
    return out or [base]


def blocks(model, protocol: Any) -> tuple[list[tuple[str, str]], list[dict[str, str]]]:
    """The (dtype, stack) blocks to time, and those the captioner does not declare, each with its
    reason (`check_stack`'s message, which carries the captioner's stack note)."""
    timed, unsupported = [], []
    for stack in protocol.stacks:
        for dtype in protocol.dtypes:
            try:
                model.check_stack(dtype, stack)
            except ValueError as err:
                unsupported.append({"dtype": dtype, "stack": stack, "reason": str(err)})
            else:
                timed.append((dtype, stack))
    return timed, unsupported


def latency_block(model, check: Any, dtype: str, stack: str, pixels, run: Run) -> tuple[dict, list]:
    """Every decoding of one (dtype, stack) timed in interleaved rounds: (the block's record, its rows)."""
    import torch

    model.set_stack(dtype, stack)
    chosen = settings(model, check, stack)
    calls = [lambda i, s=s: model.generate(pixels[i: i + 1], **s) for s in chosen]
    started = now()
    run.sampler.sample()
    with torch.inference_mode():
        p = run.protocol
        records = timed_rounds(calls, p.warmup, p.repeats, p.images, run.timer)
    run.sampler.sample()
    ended = now()
    rows = []
    for setting, record in zip(chosen, records, strict=True):
        outputs = [record["outputs"][i] for i in sorted(record["outputs"])]
        evals = [e for o in outputs for e in (o.network_evals or [])]
        rows.append({"dtype": dtype, "stack": stack, "setting": setting, **summarise(record["calls"]),
                     "warmup": record["warmup"], "network_evals": statistics.fmean(evals) if evals else None,
                     "captions": [c for o in outputs for c in o.captions], "calls": record["calls"]})
        run.log(f"  {check.name} {dtype} {stack} {_short(setting)}: {1000 * rows[-1]['seconds']:.2f} ms/caption")
    block = {"dtype": dtype, "stack": stack, "settings": len(chosen), "started": started, "ended": ended,
             "gpu": run.sampler.window(started, ended)}
    return block, rows


def sentinel(model, name: str, at: str, pixels, run: Run) -> dict[str, Any]:
    """The sentinel (default decoding, fp32 eager) timed at point `at` of the model's measurements."""
    import torch

    model.set_stack("fp32", "eager")
    decoding, p = model.default_decoding(), run.protocol
    with torch.inference_mode():
        point = sentinel_point(at, lambda i: model.generate(pixels[i: i + 1], **decoding), p.warmup, p.repeats,
                               p.images, run.timer)
    run.log(f"  {name} sentinel {at}: {1000 * point['seconds']:.2f} ms/caption")
    return point


def _short(setting: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in setting.items() if k in ("steps", "mode", "num_beams", "max_new_tokens"))
