"""device-check's measurement protocol on a stand-in captioner whose calls take known times.

The stand-in advances a fake clock by a fixed amount per call, so the timer reads exact durations and
every call's order is known: warm-ups and interleaved rounds, eager before compiled, the sentinel's
three points and its drift, and stacks the captioner does not declare.
"""

from __future__ import annotations

import pytest
import torch

from bench.api import Generation
from bench.device_check import ModelCheck, Protocol
from bench.device_measure import measure
from bench.device_timing import Timer, drift, rotation, sentinel_record, timed_rounds
from bench.stacks import InferenceStacks

WARMUP, REPEATS, IMAGES = 2, 3, 2
#: the sentinel's per-call seconds at its start, middle and end points (a machine slowing, then recovering)
SENTINEL_S = (0.010, 0.013, 0.011)


class Machine:
    """The fake clock and the log of every call made on it."""

    def __init__(self):
        self.t = 0.0
        self.calls: list[dict] = []
        self.sentinel_calls: dict[str, int] = {}  # per model: its rebuilt instance continues the count

    def __call__(self) -> float:
        return self.t


class StandIn(InferenceStacks):
    """Declares eager and compiled, fp32 and bf16; its default decoding (steps=7) is in no grid."""

    stacks, dtypes = ("eager", "compiled"), ("fp32", "bf16")
    stack_notes = {"graph": "the stand-in has no CUDA graph"}
    paradigm, trainable = "diffusion", False

    def __init__(self, machine: Machine, name: str):
        self.machine, self.name = machine, name

    def apply_stack(self, dtype: str, stack: str) -> None:
        pass

    def default_decoding(self) -> dict:
        return {"steps": 7}

    def preprocess(self, image, train: bool = False) -> torch.Tensor:
        return torch.zeros(3, 2, 2)

    def generate(self, pixels: torch.Tensor, steps: int, mode: str = "fast") -> Generation:
        m = self.machine
        sentinel = steps == 7 and len(pixels) == 1  # throughput runs the default decoding at batch 2
        if sentinel:
            done = m.sentinel_calls.get(self.name, 0)
            seconds = SENTINEL_S[done // (WARMUP + REPEATS)]
            m.sentinel_calls[self.name] = done + 1
        else:
            seconds = 0.001 * steps
        m.calls.append({"t": m.t, "dtype": self.inference_dtype, "stack": self.inference_stack, "steps": steps,
                        "mode": mode, "batch": len(pixels), "sentinel": sentinel})
        m.t += seconds
        return Generation([f"{steps}-{mode}"] * len(pixels), [steps] * len(pixels))


CHECKS = [ModelCheck(name, grid={"steps": (1, 2, 3)}, compare={"mode": ("fast", "slow")})
          for name in ("stand-in-a", "stand-in-b")]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    machine = Machine()
    protocol = Protocol(("fp32", "bf16"), ("eager", "compiled", "graph"), IMAGES, REPEATS, WARMUP, max_batch=2)
    out = tmp_path_factory.mktemp("device-check")
    results, _ = measure(CHECKS, "cpu", protocol, out, {"tiny": True, "images": IMAGES, "repeats": REPEATS,
                                                         "warmup": WARMUP}, builder=lambda check, device:
                         StandIn(machine, check.name), log=lambda _: None, clock=machine)
    return machine, results, out


def test_rounds_are_rotated_after_the_warmups():
    order: list[tuple[int, int]] = []
    calls = [lambda image, k=k: order.append((k, image)) for k in range(3)]
    records = timed_rounds(calls, warmup=2, repeats=4, images=2, timer=Timer("cpu"))
    warmups = [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    rounds = [(k, r % 2) for r in range(4) for k in rotation(3, r)]
    assert rotation(3, 0) == [0, 1, 2] and rotation(3, 1) == [1, 2, 0] and rotation(3, 5) == [2, 0, 1]
    assert order == warmups + rounds
    for record in records:
        assert record["warmup"] == 2
        assert [(c["round"], c["image"]) for c in record["calls"]] == [(r, r % 2) for r in range(4)]
    with pytest.raises(ValueError, match="at least one warm-up"):
        timed_rounds(calls, warmup=0, repeats=1, images=1, timer=Timer("cpu"))


def test_every_setting_gets_its_warmups_and_repeats_and_nothing_undeclared_is_timed(run):
    machine, results, _ = run
    counts: dict[tuple, int] = {}
    for c in machine.calls:
        if not c["sentinel"] and c["batch"] == 1:
            key = (c["dtype"], c["stack"], c["steps"], c["mode"])
            counts[key] = counts.get(key, 0) + 1
    # Both models: eager in both loop structures; compiled only in the optimized one ("fast").
    expected = {(d, "eager", s, mode) for d in ("fp32", "bf16") for s in (1, 2, 3) for mode in ("fast", "slow")}
    expected |= {(d, "compiled", s, "fast") for d in ("fp32", "bf16") for s in (1, 2, 3)}
    assert counts == {key: 2 * (WARMUP + REPEATS) for key in expected}
    assert machine.sentinel_calls == {c.name: 3 * (WARMUP + REPEATS) for c in CHECKS}
    assert not any(c["stack"] == "graph" for c in machine.calls)
    for model in results["models"]:
        assert {(u["dtype"], u["stack"]) for u in model["unsupported"]} == {("fp32", "graph"), ("bf16", "graph")}
        assert all("the stand-in has no CUDA graph" in u["reason"] for u in model["unsupported"])
        assert all(r["timed_calls"] == REPEATS and r["warmup"] == WARMUP for r in model["latency"])
        assert not any(r["stack"] == "graph" for r in model["latency"])
        # The stand-in's known times are read back exactly: a row's median is its call's duration.
        assert all(r["seconds"] == pytest.approx(0.001 * r["setting"]["steps"]) for r in model["latency"])


def test_every_eager_row_is_timed_before_any_compiled_row(run):
    _, results, _ = run
    times = {"eager": [], "compiled": []}
    for model in results["models"]:
        for row in model["latency"]:
            times[row["stack"]] += [c["t"] for c in row["calls"]]
    assert len(times["eager"]) == 2 * 12 * REPEATS and len(times["compiled"]) == 2 * 6 * REPEATS
    assert max(times["eager"]) < min(times["compiled"])


def test_sentinel_brackets_the_blocks_and_its_drift_is_max_over_min(run):
    _, results, out = run
    for model in results["models"]:
        sentinel = model["sentinel"]
        assert [p["at"] for p in sentinel["points"]] == ["start", "middle", "end"]
        assert [p["seconds"] for p in sentinel["points"]] == pytest.approx(SENTINEL_S)
        assert sentinel["drift"] == pytest.approx(max(SENTINEL_S) / min(SENTINEL_S)) and sentinel["warning"]
        start, middle, end = ([c["t"] for c in p["calls"]] for p in sentinel["points"])
        eager = [c["t"] for r in model["latency"] if r["stack"] == "eager" for c in r["calls"]]
        compiled = [c["t"] for r in model["latency"] if r["stack"] == "compiled" for c in r["calls"]]
        assert max(start) < min(eager) and max(eager) < min(middle) and max(middle) < min(compiled)
        assert max(compiled) < min(end)
    text = (out / "device-check.md").read_text()
    assert "**Warning: stand-in-a's sentinel drifted 1.30x**" in text
    assert "| stand-in-a | steps=7 | 10.00 | 13.00 | 11.00 | 1.300 |" in text


def test_drift_warning_only_above_ten_percent():
    points = [{"seconds": s} for s in (1.0, 1.05, 1.02)]
    assert drift([1.0, 1.05, 1.02]) == pytest.approx(1.05)
    assert sentinel_record({}, points)["warning"] is False
    assert sentinel_record({}, [{"seconds": 1.0}, {"seconds": 1.2}])["warning"] is True
    assert drift([1.0]) is None
