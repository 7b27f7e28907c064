"""A captioner defined here, outside models/, with a paradigm and a knob of its own, runs a whole suite
(sweeps, latency, report) through the harness as it is: nothing under bench/ knows about it."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.api import PROBE_RAW, Captioner, CaptionerConfig, Knob, VariantInfo


@dataclass
class TemplateConfig(CaptionerConfig):
    seconds_per_word: float = 0.001


class TemplateCaptioner(Captioner):
    """Names the image's brightest colour channel in a caption of `words` words (its own knob)."""

    paradigm = "template"  # a paradigm the harness has never heard of
    trainable = False
    knobs = (Knob("words", int, 3, sweep=(1, 3, 6), cost=True, label="caption words"),)
    probes = frozenset({PROBE_RAW})
    variants = {"template-test": TemplateConfig()}
    info = {"template-test": VariantInfo("none", "a template captioner defined in a test")}

    def __init__(self, config: TemplateConfig):
        super().__init__(config)
        self.filler: list[str] = []

    def prepare(self, train) -> None:
        counts = Counter(w for s in train for r in s.references for w in r.lower().split())
        self.filler = [w for w, _ in counts.most_common(6)]

    def preprocess(self, image, train: bool = False) -> torch.Tensor:
        return torch.tensor(image.resize((8, 8)).getdata(), dtype=torch.float32).mean(0)

    def caption(self, pixel_values: torch.Tensor, words: int = 3) -> list[str]:
        time.sleep(self.config.seconds_per_word * words)
        names = ("red", "green", "blue")
        return [" ".join([names[int(p.argmax())], *self.filler][:words]) for p in pixel_values]

    def caption_raw(self, pixel_values: torch.Tensor, **decoding) -> list[str]:
        return self.caption(pixel_values, **decoding)

    def default_decoding(self) -> dict:
        return {"words": 3}

    def decode_cost(self, words: int = 3) -> int:
        return words

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "filler.txt").write_text(" ".join(self.filler))

    @classmethod
    def load(cls, directory: Path) -> TemplateCaptioner:
        model = cls(TemplateConfig())
        model.filler = (directory / "filler.txt").read_text().split()
        return model


def test_a_captioner_from_outside_models_runs_a_suite_with_its_own_knob(write_config, monkeypatch):
    from bench.config import load_config
    from bench.registry import captioners
    from bench.report import build_report
    from bench.results import collect
    from bench.suite import run_suite

    captioners.names()  # load the built-in entries, then add this one for the test only
    monkeypatch.setitem(captioners._entries, "template-test", type(captioners.entry("constant"))(
        "template-test", f"{__name__}:TemplateCaptioner", "test plugin", "template"))
    path = write_config("""
        executor: {kind: local}
        tracking: {kind: none}
        suites:
          plug:
            tasks: [shapes]
            phases: [train, eval, latency, errprop]
            eval: {bootstrap: 50}
            latency: {images: 2, repeats: 1, batch_sizes: [1], sweep: {words: [1, 6]}}
            errprop: {images: 4, positions: 2, wrong_words: 1, n_resamples: 20}
            models:
              - constant
              - {name: template-test, decoding: {words: 2, sweep: {words: [1, 4]}}}
        """)
    cfg = load_config(path)
    results = run_suite(cfg, "plug", echo=lambda *_: None)
    assert [r["status"] for r in results] == ["ok", "ok"], [r.get("error") for r in results]
    mine = next(r for r in results if r["model"] == "template-test")
    job_dir = cfg.results_dir / "plug" / mine["job_id"]
    sweep = {row["value"]: row for row in __import__("json").loads((job_dir / "sweep.json").read_text())}
    assert set(sweep) == {1, 4} and sweep[4]["decode_cost"] == 4
    latency = __import__("json").loads((job_dir / "latency.json").read_text())
    # One grid per model: the model's decoding.sweep is timed too (the suite's latency.sweep yields to it).
    assert [row["value"] for row in latency["sweeps"]["words"]] == [1, 4]
    paths = build_report(cfg.results_dir / "plug", collect(cfg.results_dir / "plug"), figures=True)
    table = next(p for p in paths if p.name.endswith("-latency.md")).read_text()
    assert "template-test" in table and "words=4" in table and "template" in table
    assert any(p.name.endswith("quality_vs_words.png") for p in paths)
