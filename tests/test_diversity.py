"""Diversity: the measures on captions whose answer is known, the sampling probes, and the phase."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bench.metrics import diversity as dm
from bench.results import read_json

SAME = ["a red circle left of a blue square"] * 5
DISJOINT = ["red circle over green", "blue square under yellow", "small triangle beside large",
            "two purple stars shine", "one orange hexagon rests"]
REFERENCES = ["a red circle left of a blue square", "a blue square and a red circle",
              "two shapes: a circle and a square", "small green triangle"]


@pytest.fixture
def df():
    return dm.DocumentFrequency([REFERENCES, ["a green triangle"], ["an orange star"]])


def test_identical_captions_are_the_least_diverse(df):
    # one caption of 8 words, 7 distinct (a x2), 5 times: Div-1 = 7 / 40; its 7 distinct bigrams over
    # the same 40 words (the denominator is words, not n-grams): Div-2 = 7 / 40
    assert dm.div_n(SAME, 1) == pytest.approx(7 / 40)
    assert dm.div_n(SAME, 2) == pytest.approx(7 / 40)
    assert dm.mbleu4(SAME) == pytest.approx(1.0)
    assert dm.self_cider(dm.cider_kernel(SAME, df)) == pytest.approx(0.0, abs=1e-9)


def test_captions_without_a_shared_word_are_the_most_diverse(df):
    # 20 words, all distinct; 15 bigrams, all distinct, over the same 20 words
    assert dm.div_n(DISJOINT, 1) == 1.0 and dm.div_n(DISJOINT, 2) == pytest.approx(15 / 20)
    kernel = dm.cider_kernel(DISJOINT, df)
    np.testing.assert_allclose(kernel, 10 * np.eye(5), atol=1e-12)  # orthogonal, unit norm per order
    assert dm.self_cider(kernel) == pytest.approx(1.0)
    assert dm.mbleu4(DISJOINT) < 1e-6


def test_div_n_divides_distinct_ngrams_by_words():
    # Shetty et al. 2017 / Aneja et al. 2019: distinct n-grams over the total words of the k captions.
    # "x y" twice: 4 words, 2 distinct words, 1 distinct bigram (over n-grams it would be 1 / 2)
    assert dm.div_n(["x y", "x y"], 1) == pytest.approx(2 / 4)
    assert dm.div_n(["x y", "x y"], 2) == pytest.approx(1 / 4)
    # "a b a" + "a c": 5 words; unigrams {a, b, c}; bigrams {a b, b a, a c} (none across captions)
    assert dm.div_n(["a b a", "a c"], 1) == pytest.approx(3 / 5)
    assert dm.div_n(["a b a", "a c"], 2) == pytest.approx(3 / 5)
    assert dm.div_n(["", "..."], 1) == 0.0


def test_self_cider_of_a_hand_computed_3x3_kernel():
    # eigenvalues of [[1, .5, 0], [.5, 1, 0], [0, 0, 1]]: 1.5, 0.5, 1; sigma = their square roots
    kernel = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]])
    sigma = [math.sqrt(1.5), math.sqrt(0.5), 1.0]
    expected = -math.log(sigma[0] / sum(sigma)) / math.log(3)
    assert dm.self_cider(kernel) == pytest.approx(expected)
    assert expected == pytest.approx(0.79455, abs=1e-5)  # by hand: -ln(1.2247 / 2.9318) / ln 3
    assert dm.self_cider(7.0 * kernel) == pytest.approx(expected)  # scale-free, as the CIDEr x10 is


def test_cider_kernel_by_hand():
    # Two documents; "x" is in both (idf 0), "y" in one (idf log 2), "z" in none (idf log 2).
    df = dm.DocumentFrequency([["x y"], ["x"]])
    kernel = dm.cider_kernel(["x y", "x z", "y y"], df)
    # unigrams only carry weight ("x y" bigram etc. are unseen: idf log 2, but no pair shares one)
    # "x y" . "y y": unigram cosine 1 (only y weighs); bigram "x y" vs "y y": 0 -> (1 + 0) / 4 x 10
    assert kernel[0, 2] == pytest.approx(10 / 4)
    assert kernel[0, 1] == pytest.approx(0.0)  # y vs z: nothing shared that weighs
    assert kernel[0, 0] == pytest.approx(10 * 2 / 4)  # unigrams and bigrams; no 3- or 4-grams
    np.testing.assert_allclose(kernel, kernel.T)


def test_measure_and_bootstrap_cover_every_metric():
    samples = {"i1": SAME, "i2": DISJOINT}
    references = {"i1": REFERENCES, "i2": ["red circle over green", "a blue square"]}
    measured = dm.measure(samples, references, training_captions=["a red circle left of a blue square"])
    assert set(measured["corpus"]) == set(dm.METRICS)
    assert measured["per_image"]["i1"]["novel_rate"] == 0.0 and measured["per_image"]["i2"]["novel_rate"] == 1.0
    assert measured["per_image"]["i1"]["cider_best_of_k"] == measured["per_image"]["i1"]["cider_mean_of_k"]
    assert measured["per_image"]["i2"]["cider_best_of_k"] > measured["per_image"]["i2"]["cider_mean_of_k"]
    assert measured["corpus"]["vocab"] == len({w for c in SAME + DISJOINT for w in c.split()})
    intervals = dm.bootstrap(measured, n_resamples=200, seed=3)
    assert intervals == dm.bootstrap(measured, n_resamples=200, seed=3)
    for metric in dm.METRICS:
        iv = intervals[metric]
        assert iv["low"] <= iv["high"] and iv["n_images"] == 2
    assert intervals["div1"]["low"] < intervals["div1"]["high"]  # the two images differ
    with pytest.raises(ValueError, match="k >= 2"):
        dm.measure({"i1": SAME[:1]}, references, [])


# ---------------------------------------------------------------- sampling probes and the phase

@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    from tasks.shapes import ShapesTask

    task = ShapesTask(seed=1, train=40, val=6, test=12, root=tmp_path_factory.mktemp("shapes"))
    task.ensure_files()
    return task


@pytest.fixture(scope="module")
def vit_gpt2(shapes):
    from bench.registry import create_captioner

    torch.manual_seed(0)
    captioner = create_captioner("vit-gpt2-tiny")
    captioner.prepare(shapes.samples("train"))
    return captioner


def test_autoregressive_sampling_is_seeded_and_beams_are_distinct(vit_gpt2, shapes):
    from bench.samples import readable

    _, pixels, _ = readable(shapes.samples("test"), vit_gpt2, 3)
    state = torch.random.get_rng_state()
    a = vit_gpt2.sample_captions(pixels, 4, "nucleus", seed=1)
    assert torch.equal(state, torch.random.get_rng_state())  # the global generator is left alone
    assert a == vit_gpt2.sample_captions(pixels, 4, "nucleus", seed=1)
    assert a != vit_gpt2.sample_captions(pixels, 4, "nucleus", seed=2)
    assert [len(row) for row in a] == [4, 4, 4]
    beams = vit_gpt2.sample_captions(pixels, 3, "beams", seed=0, num_beams=2)
    assert [len(row) for row in beams] == [3, 3, 3]
    assert beams[0][0] == vit_gpt2.caption(pixels[:1], num_beams=3)[0]  # the top beam is the 3-beam caption
    with pytest.raises(ValueError, match="accepted: nucleus, beams"):
        vit_gpt2.sample_captions(pixels, 2, "seeds")


def _job(tmp_path, **diversity):
    return SimpleNamespace(dir=tmp_path, diversity={"images": 5, "k": 3, "batch_size": 2, **diversity},
                           eval={"split": "test", "bootstrap": 50}, seed=0, decoding={})


def test_phase_writes_every_metric_per_method(vit_gpt2, shapes, tmp_path):
    from bench.phases.diversity import diversity_phase

    out = diversity_phase(_job(tmp_path), shapes, vit_gpt2, print)
    report = read_json(tmp_path / "diversity.json")
    assert set(report["methods"]) == {"nucleus", "beams"} and report["images"] == 5
    for method, row in report["methods"].items():
        assert set(row["corpus"]) == set(dm.METRICS) == set(row["intervals"])
        assert len(row["captions"]) == 5 and all(len(c) == 3 for c in row["captions"].values())
        assert ("top-p 0.9" in row["search"]) == (method == "nucleus")
        assert row["decoding"]["max_new_tokens"] == vit_gpt2.config.max_new_tokens
        assert row["overrides"]["num_beams"] == (1 if method == "nucleus" else 3)
    metrics = out["metrics"]
    assert metrics["div1"] == metrics["div1_nucleus"] == report["methods"]["nucleus"]["corpus"]["div1"]
    assert {f"{m}_beams" for m in dm.METRICS} <= set(metrics) and metrics["diversity_seconds"] > 0
    # a second run reads the file instead of sampling again
    assert diversity_phase(_job(tmp_path), shapes, None, print) == out


def test_phase_records_a_model_without_sampling_as_unavailable(shapes, tmp_path):
    from bench.phases.diversity import diversity_phase
    from bench.registry import create_captioner

    constant = create_captioner("constant")
    constant.prepare(shapes.samples("train"))
    out = diversity_phase(_job(tmp_path), shapes, constant, print)
    assert out["metrics"] == {} and "sampling" in out["unavailable"]
    assert "sampling" in read_json(tmp_path / "diversity.json")["unavailable"]


def test_ladic_samples_k_seeds(shapes, tmp_path):
    from bench.phases.diversity import diversity_phase
    from bench.registry import create_captioner

    torch.manual_seed(0)
    ladic = create_captioner("ladic-tiny")
    ladic.prepare(shapes.samples("train"))
    from bench.samples import readable

    _, pixels, _ = readable(shapes.samples("test"), ladic, 2)
    rows = ladic.sample_captions(pixels, 3, "seeds", seed=4, steps=2)
    assert rows == [[ladic.caption(pixels[i:i + 1], seed=4 + j, steps=2)[0] for j in range(3)] for i in range(2)]
    out = diversity_phase(_job(tmp_path, images=3), shapes, ladic, print)
    assert set(read_json(tmp_path / "diversity.json")["methods"]) == {"seeds"}
    assert "div1_seeds" not in out["metrics"] and set(dm.METRICS) <= set(out["metrics"])


@pytest.mark.parametrize("name", ["blip-tiny", "git-tiny"])
def test_pretrained_family_sampling(name, shapes):
    from bench.registry import create_captioner
    from bench.samples import readable

    torch.manual_seed(0)
    captioner = create_captioner(name)
    captioner.prepare(shapes.samples("train"))
    _, pixels, _ = readable(shapes.samples("test"), captioner, 2)
    decoding = {**captioner.default_decoding(), "max_new_tokens": 6}
    a = captioner.sample_captions(pixels, 3, "nucleus", seed=5, **decoding)
    assert [len(r) for r in a] == [3, 3] and a == captioner.sample_captions(pixels, 3, "nucleus", seed=5, **decoding)
    beams = captioner.sample_captions(pixels, 2, "beams", **decoding)
    assert beams[1][0] == captioner.caption(pixels[1:], **{**decoding, "num_beams": 2})[0]


SUITE = """
executor: {kind: local}
tracking: {kind: none}
suites:
  mini:
    tasks: [shapes]
    phases: [train, diversity]
    train: {epochs: 1, batch_size: 16, lr: 1.0e-3}
    diversity: {images: 4, k: 2, batch_size: 4}
    models: [vit-gpt2-tiny]
"""


def test_runner_writes_diversity_and_isolates_its_failure(write_config, monkeypatch):
    import bench.phases.diversity as phase
    from bench.config import load_config
    from bench.plan import plan_suite
    from bench.runner import run_job

    cfg = load_config(write_config(SUITE))
    (job,) = plan_suite(cfg, "mini")
    assert job.diversity == {"images": 4, "k": 2, "batch_size": 4, "temperatures": [0.5, 1.0, 1.5], "top_p": [0.5, 1.0]}
    result = run_job(job)
    assert result["status"] == "ok" and result["diversity"]["images"] == 4
    assert {"div1", "self_cider_beams", "cider_best_of_k_nucleus"} <= set(result["metrics"])
    assert (job.dir / "diversity.json").is_file()

    (job.dir / "diversity.json").unlink()

    def broken(*args, **kwargs):
        raise RuntimeError("sampling broke")

    monkeypatch.setattr(phase, "diversity_phase", broken)
    result = run_job(job)
    assert result["status"] == "partial" and result["phase_errors"]["diversity"]["message"] == "sampling broke"
    assert result["train"]  # the trained model (an earlier phase) stands
    assert "div1" not in result.get("metrics", {})


def test_quality_vs_diversity_figure(tmp_path):
    from bench.report.data import Entry, Run
    from bench.report.figures import make_figures, quality_vs_diversity
    from bench.report.plotting import model_styles

    def entry(label, methods):
        return Entry(label, label, "shapes", "", 0, 0, [Run(result={"seed": 0, "diversity": {"methods": methods}})])

    row = {"self_cider": 0.4, "cider_mean_of_k": 0.9, "cider_best_of_k": 1.3}
    styles = model_styles(["a", "b"])
    assert quality_vs_diversity([entry("a", {})], styles) is None  # no data, no figure
    fig = quality_vs_diversity([entry("a", {"seeds": row}), entry("b", {"nucleus": row, "beams": row})], styles)
    axis = fig.axes[0]
    assert sorted(t.get_text() for t in axis.texts) == ["beams", "nucleus", "seeds"]
    assert len(axis.lines) == 3 * 3  # per point: the mean, the best, the line between
    curve = [{**row, "temperature": t, "top_p": None, "default": t == 1.0, "self_cider": 0.2 * t}
             for t in (1.0, 0.5, 1.5)]
    swept = Entry("a", "a", "shapes", "", 0, 0, [Run(result={"seed": 0, "diversity": {
        "methods": {"seeds": row}, "curves": {"seeds": curve}}})])
    axis = quality_vs_diversity([swept], styles).axes[0]
    assert len(axis.lines) == 3 + 1  # the point's three, and the dotted curve through the sweep
    assert list(axis.lines[-1].get_xdata()) == pytest.approx([0.1, 0.2, 0.3])  # ordered by temperature
    written = make_figures([entry("a", {"seeds": row})], styles, tmp_path)
    assert tmp_path / "quality_vs_diversity.png" in written


def test_paired_difference():
    a = {str(i): {"div1": 0.5 + 0.01 * i} for i in range(30)}
    b = {str(i): {"div1": 0.2 + 0.01 * (i % 7)} for i in range(30)}
    same = dm.paired_difference(a, a, "div1", seed=1)
    assert same["delta"] == 0 and same["p_value"] == 1.0
    diff = dm.paired_difference(a, b, "div1", seed=1)
    assert diff["delta"] == pytest.approx(np.mean([a[i]["div1"] - b[i]["div1"] for i in a]))
    assert diff["low"] > 0 and diff["p_value"] < 0.01
    with pytest.raises(ValueError, match="not per image"):
        dm.paired_difference(a, b, "vocab")


def test_interpolate_along_a_curve_never_extrapolates():
    assert dm.interpolate([0.2, 0.6], [0.9, 0.5], 0.5) == pytest.approx(0.6)
    assert dm.interpolate([0.6, 0.2, 0.4], [0.5, 0.9, 0.8], 0.3) == pytest.approx(0.85)  # ordered by quality
    assert dm.interpolate([0.2, 0.2, 0.6], [1.0, 0.8, 0.5], 0.2) == pytest.approx(0.9)  # ties averaged
    assert dm.interpolate([0.2, 0.6], [0.9, 0.5], 0.7) is None and dm.interpolate([0.2, 0.6], [0.9, 0.5], 0.1) is None


def _curve(points):
    """Per-image records of a sweep: every image has the point's (quality, Div-1)."""
    return [{str(i): {"cider_mean_of_k": q, "div1": d} for i in range(4)} for q, d in points]


def test_matched_quality_by_hand():
    # A: quality 0.2 -> Div-1 0.9, 0.6 -> 0.5; B: 0.4 -> 0.4, 1.0 -> 0.1. Overlap [0.4, 0.6];
    # at its middle, 0.5: A 0.6, B 0.4 - 0.3 * (0.1 / 0.6) = 0.35; A - B = 0.25
    a, b = _curve([(0.2, 0.9), (0.6, 0.5)]), _curve([(0.4, 0.4), (1.0, 0.1)])
    out = dm.matched_quality(a, b, "div1", fractions=(0.5,), n_resamples=20)
    assert out["reachable"] and out["range_a"] == [0.2, 0.6] and out["range_b"] == [0.4, 1.0]
    (t,) = out["targets"]
    assert t["quality"] == pytest.approx(0.5) and t["a"] == pytest.approx(0.6) and t["b"] == pytest.approx(0.35)
    assert t["delta"] == pytest.approx(0.25) and t["low"] == pytest.approx(0.25) == t["high"]  # images agree
    assert t["resamples_reaching"] == 20
    apart = dm.matched_quality(a, _curve([(0.7, 0.4), (1.0, 0.1)]), "div1")
    assert not apart["reachable"] and apart["targets"] == []  # ranges [0.2, 0.6] and [0.7, 1.0]: no common quality


class FakeSampler:
    """k captions whose diversity and quality follow the temperature: at temperature t, the k captions
    share fewer words as t grows (a toy with a known direction), no sampling_settings."""

    probes = frozenset({"sampling"})
    sampling_methods = ("fake",)
    device = torch.device("cpu")

    def __init__(self):
        self.calls = []

    def default_decoding(self):
        return {}

    def preprocess(self, image, train=False):
        return torch.zeros(3, 4, 4)

    def sample_captions(self, pixel_values, k, method, seed=0, temperature=1.0, **decoding):
        self.calls.append(temperature)
        words = ["red", "blue", "green", "square", "circle", "triangle", "small", "large"]
        distinct = max(1, int(round(2 * temperature)))  # 1, 2, 3 middle words at 0.5, 1, 1.5
        return [[" ".join(["a", words[j % distinct], "circle"]) for j in range(k)] for _ in range(len(pixel_values))]


class FakeWithoutTemperature(FakeSampler):
    def sample_captions(self, pixel_values, k, method, seed=0, **decoding):
        return super().sample_captions(pixel_values, k, method, seed)


def test_phase_sweeps_the_temperature_of_a_fake_captioner(shapes, tmp_path):
    from bench.phases.diversity import diversity_phase

    fake = FakeSampler()
    out = diversity_phase(_job(tmp_path, temperatures=[0.5, 1.0, 1.5]), shapes, fake, print)
    sweep = read_json(tmp_path / "diversity.json")["methods"]["fake"]["sweep"]
    assert [p["temperature"] for p in sweep] == [1.0, 0.5, 1.5] and [p["default"] for p in sweep] == [True, False, False]
    div1 = {p["temperature"]: p["corpus"]["div1"] for p in sweep}
    assert [div1[t] for t in (0.5, 1.0, 1.5)] == pytest.approx([3 / 9, 4 / 9, 5 / 9])  # 1, 2, 3 middle words
    assert set(next(iter(sweep[0]["per_image"].values()))) >= {"cider_mean_of_k", "div1", "self_cider"}
    assert [p["temperature"] for p in out["curves"]["fake"]] == [1.0, 0.5, 1.5]

    other = tmp_path / "without"
    other.mkdir()
    out = diversity_phase(_job(other, temperatures=[0.5, 1.0]), shapes, FakeWithoutTemperature(), print)
    assert len(read_json(other / "diversity.json")["methods"]["fake"]["sweep"]) == 1
    assert "no temperature sweep" in out["unavailable"]["fake temperature sweep"]


def test_phase_sweeps_nucleus_temperature_and_top_p_and_runs_beams_once(vit_gpt2, shapes, tmp_path):
    from bench.phases.diversity import diversity_phase

    diversity_phase(_job(tmp_path, temperatures=[0.5, 1.0], top_p=[0.5]), shapes, vit_gpt2, print)
    methods = read_json(tmp_path / "diversity.json")["methods"]
    assert [(p["temperature"], p["top_p"]) for p in methods["nucleus"]["sweep"]] == [(1.0, 0.9), (0.5, 0.9), (1.0, 0.5)]
    assert len(methods["beams"]["sweep"]) == 1 and methods["beams"]["deterministic"]
    with pytest.raises(ValueError, match="deterministic"):
        vit_gpt2.sample_captions(torch.zeros(1, 3, 32, 32), 2, "beams", temperature=0.5)


def _sweep(points, ids):
    """diversity.json's method entry: a temperature sweep whose every image has the point's values."""
    sweep = []
    for t, q, d in points:
        values = {"cider_mean_of_k": q, "cider_best_of_k": q + 0.1, "div1": d, "div2": d, "mbleu4": 1 - d,
                  "self_cider": d}
        sweep.append({"temperature": t, "top_p": None, "default": t == 1.0, "seconds": 1.0,
                      "corpus": {**values, "vocab": 10.0, "novel_rate": 0.5},
                      "per_image": {i: dict(values) for i in ids}})
    return {"deterministic": False, "sweep": sweep, "corpus": sweep[0]["corpus"]}


def test_report_matches_diversity_at_equal_quality(tmp_path):
    import csv
    import io
    import json

    from bench.report import build_report
    from tests.test_report import TASK, make_suite

    suite, results = make_suite(tmp_path)
    ids = [f"img{n}" for n in range(6)]
    curves = {"ladic-mini": [(1.0, 0.2, 0.9), (0.5, 0.6, 0.5)],  # A: Div-1 0.9 at CIDEr 0.2, 0.5 at 0.6
              "vit-gpt2-mini": [(1.0, 0.4, 0.4), (1.5, 1.0, 0.1)]}  # B: 0.4 at 0.4, 0.1 at 1.0 (toy)
    for r in results:
        if r["label"] in curves and r["seed"] == 0:
            method = "seeds" if r["label"] == "ladic-mini" else "nucleus"
            (suite / r["job_id"] / "diversity.json").write_text(json.dumps(
                {"sampling_methods": [method], "seed": 0, "methods": {method: _sweep(curves[r["label"]], ids)}}))
    build_report(suite, results, formats=["md", "csv"], commit="0", figures=False)
    md = (suite / "report" / f"{TASK}-diversity.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| ladic-mini") and "Div-1 " in line)
    # common range [0.4, 0.6]; at its middle, 0.5: A 0.6, B 0.35 (module test_matched_quality_by_hand)
    assert "0.600 vs 0.350: +0.250 [+0.250, +0.250] @ 50.0" in row and "| 0 " in row  # seed 0 only
    rows = list(csv.DictReader(io.StringIO((suite / "report" / f"{TASK}-verdict.csv").read_text())))
    div1 = next(r for r in rows if r["axis"].startswith("diversity at matched mean-of-k CIDEr: Div-1"))
    assert div1["axis"].endswith(" 50.0") and div1["A - B"] == "+0.250" and div1["A"].endswith("(seed 0)")
    assert div1["verdict"] == "diffusion more diverse (unadjusted interval)"
    mbleu = next(r for r in rows if r["axis"].startswith("diversity at matched mean-of-k CIDEr: mBLEU-4"))
    assert mbleu["A - B"] == "-0.250" and mbleu["verdict"].startswith("diffusion more diverse")
    report_md = (suite / "report" / f"{TASK}-report.md").read_text()
    assert "## Diversity at matched quality" in report_md


def test_diversity_sweep_values_are_checked():
    from pydantic import ValidationError

    from bench.config import DiversityConfig

    assert DiversityConfig(temperatures=[0.7, 1.3], top_p=[0.8]).temperatures == [0.7, 1.3]
    with pytest.raises(ValidationError, match=r"diversity.temperatures: \[0.0\] not accepted; accepted: numbers > 0"):
        DiversityConfig(temperatures=[0.0, 1.0])
    with pytest.raises(ValidationError, match=r"diversity.top_p: \[1.5\] not accepted"):
        DiversityConfig(top_p=[1.5])


def test_a_curve_of_one_point_gives_no_interval_and_no_claim(monkeypatch):
    """A method without a temperature sweep has one point: matched there, its resampled curves have no
    value, so the verdict row shows no interval and claims nothing (never "interval contains 0")."""
    import bench.report.diversity
    from bench.report.verdict import diversity_rows

    a, b = SimpleNamespace(label="one-point"), SimpleNamespace(label="curve")
    nan = float("nan")
    target = {"quality": 1.792, "a": 0.2, "b": 0.3, "delta": -0.1, "low": nan, "high": nan}
    monkeypatch.setattr(bench.report.diversity, "matched", lambda entries: [
        {"a": a, "b": b, "measure": "div1", "reachable": True, "targets": [target], "seeds": (0, 0)}])
    (row,) = diversity_rows({"diffusion": [a], "autoregressive": [b]})
    assert row.interval == "–" and row.verdict == "not tested: no interval (a curve of one point)"
    target.update(low=-0.15, high=-0.05)
    (row,) = diversity_rows({"diffusion": [a], "autoregressive": [b]})
    assert row.verdict == "autoregressive more diverse (unadjusted interval)"
