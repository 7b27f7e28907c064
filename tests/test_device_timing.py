"""device-check's timing protocol (bench/device_timing.py): warm-ups, rotated rounds, the sentinel's drift."""

from __future__ import annotations

import pytest

from bench.device_timing import Timer, drift, rotation, sentinel_record, timed_rounds


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


def test_drift_warning_only_above_ten_percent():
    points = [{"seconds": s} for s in (1.0, 1.05, 1.02)]
    assert drift([1.0, 1.05, 1.02]) == pytest.approx(1.05)
    assert sentinel_record({}, points)["warning"] is False
    assert sentinel_record({}, [{"seconds": 1.0}, {"seconds": 1.2}])["warning"] is True
    assert drift([1.0]) is None
