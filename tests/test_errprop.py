import pytest
import torch

from bench.metrics import errprop as ep
from bench.phases.errprop import _autoregressive_probes

VOCAB = ["red", "green", "blue", "circle", "square", "left", "right", "top", "bottom", "small"]


class ChainModel:
    """Deterministic toy autoregressive model: each word is the successor of the previous one."""

    paradigm = "autoregressive"
    device = torch.device("cpu")
    length = 8

    def next_word(self, previous: str, position: int) -> str:
        return VOCAB[(VOCAB.index(previous) + 1) % len(VOCAB)]

    def continue_from(self, pixels, prefixes, **decoding):
        out = []
        for prefix in prefixes:
            words = list(prefix)
            while len(words) < self.length:
                words.append(self.next_word(words[-1], len(words)))
            out.append(" ".join(words))
        return out

    def caption(self, pixels, **decoding):
        return self.continue_from(pixels, [["red"]] * len(pixels))

    def teacher_forced_words(self, pixels, captions):
        return [[k > 0 and w == self.next_word(ws[k - 1], k) for k, w in enumerate(ws)]
                for ws in (c.split() for c in captions)]


class PositionModel(ChainModel):
    """Each word depends on its position only: an injected error cannot propagate."""

    def next_word(self, previous: str, position: int) -> str:
        return VOCAB[position % len(VOCAB)]


@pytest.mark.parametrize("model, changed", [(ChainModel(), lambda k: 8 - k - 1), (PositionModel(), lambda k: 0)])
def test_injection_gives_the_known_change_counts(model, changed):
    ids = ["a", "b"]
    base = dict(zip(ids, model.caption(torch.zeros(2, 1)), strict=True))
    references = {i: [base[i], "red green blue"] for i in ids}
    report = {"free_running": ep.position_accuracy(list(ep.free_running_hits(base, references).values())),
              "unavailable": {}}
    _autoregressive_probes(model, torch.zeros(2, 1), ids, base, references, VOCAB, {"positions": 5}, report)
    curve = report["injection"]
    assert [row["position"] for row in curve] == [0, 1, 2, 3, 4]
    assert [row["mean_changed_after"] for row in curve] == [changed(k) for k in range(5)]
    assert all(row["cider_drop"] == pytest.approx(row["cider_before"] - row["cider_after"]) for row in curve)
    # teacher forcing on the model's own captions: every word after the first is predicted
    assert report["teacher_forced"][0]["accuracy"] == 0 and report["teacher_forced"][3]["accuracy"] == 1
    assert [r["gap"] for r in report["exposure_gap"]][1:] == [0.0] * 7


def test_alignment_accuracy_and_repetition():
    refs = [["a", "red", "circle"], ["a", "blue", "square", "on", "the", "left"]]
    assert ep.best_aligned(["a", "blue", "square", "on"], refs) == refs[1]
    hits = ep.free_running_hits({"x": "a blue circle"}, {"x": ["a red circle", "the big blue circle"]})
    assert hits["x"] == [True, False, True]
    rows = ep.position_accuracy([[True, False, True], [True, True]])
    assert [r["accuracy"] for r in rows] == [1.0, 0.5, 1.0] and [r["count"] for r in rows] == [2, 2, 1]
    assert ep.repetition_rate(["a a red red circle", "a circle"]) == pytest.approx(2 / 5)
    assert ep.changes_elsewhere(["a", "b", "c"], ["a", "x", "d", "e"], 1) == 2


def test_length_buckets_are_shared_and_ordered():
    refs = {"s": ["one two three four five"], "l": ["one two three four five six seven eight nine ten"]}
    assert ep.length_buckets(refs) == {"s": 5, "l": 10}
    rows = ep.quality_by_length({"s": "x", "l": "y"}, refs, {"s": 0.5, "l": 1.5}, lambda ids: 0.0, min_images=1)
    assert [(r["length"], r["CIDEr"]) for r in rows] == [(5, 0.5), (10, 1.5)]
