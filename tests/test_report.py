"""`bench report`: tables (Markdown, LaTeX, CSV), figures and footer from a fixed results folder.

The fixture writes the result files of a small suite by hand, with fixed numbers, in the layout the
phases write (bench/phases/*.py): a diffusion model with a steps sweep, an autoregressive one with
beam and length sweeps (two seeds), a reference one, and a failed job.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from pathlib import Path

import pytest

from bench.report import build_report
from bench.report.data import load_published
from bench.report.tables import tex_escape

TASK = "coco"  # the task of the published numbers, so reported rows appear
STARTED = 1_760_000_000.0  # 2025-10-09 UTC: the footer's date must come from here, not the clock
REPO = Path(__file__).resolve().parents[1]


def _interval(point: float, width: float) -> dict:
    return {"point": point, "low": point - width, "high": point + width, "confidence": 0.95,
            "n_resamples": 200, "n_images": 100}


def _scores(corpus: dict[str, float], decoding: dict) -> dict:
    return {"split": "test", "decoding": decoding, "corpus": corpus,
            "per_image": {"img1": corpus, "img2": corpus},
            "intervals": {m: _interval(v, 0.01 + 0.02 * v) for m, v in corpus.items()},
            "unavailable": {"SPICE": "SPICE needs stanford-corenlp-3.6.0.jar in /somewhere: download it"},
            "images_scored": 100, "images_unreadable": [], "images_missing": [], "caption_seconds": 1.0,
            "decode_cost": 10}


def _latency(decoding: dict, median: float, sweeps: dict) -> dict:
    return {"environment": {"device": "Test CPU, 2 thread(s)", "device_type": "cpu", "dtype": "float32",
                            "torch": "2.13.0+cpu", "transformers": "5.0.0", "python": "3.11.2"},
            "decoding": decoding,
            "batch1": {"median_s": median, "p90_s": 1.2 * median, "mean_s": median, "images": 8,
                       "network_evals": 20},
            "throughput": [{"batch_size": 1, "seconds": median, "images_per_s": 1 / median},
                           {"batch_size": 16, "seconds": 4 * median, "images_per_s": 4 / median},
                           {"batch_size": 64, "error": "out of memory"}],
            "sweeps": sweeps}


#: What `Captioner.describe` records for vit-gpt2-mini (new results); ladic-mini's files are older.
VIT_INFO = {"paradigm": "autoregressive", "pretraining": "none", "probes": ["forced_length", "raw"],
            "knobs": [{"name": "num_beams", "type": "int", "default": None, "sweep": [1, 3, 5], "cost": True,
                       "label": "beam size"},
                      {"name": "max_new_tokens", "type": "int", "default": None, "sweep": [], "cost": False,
                       "label": "max_new_tokens"}]}


def _new_format(latency: dict, shift: float) -> dict:
    """Latency as the phase writes it now: repeats with their spread, tokens as generated."""
    latency["batch1"].update(repeats=3, iqr_s=0.002 + shift, std_s=0.001, tokens=9.0, network_evals=10.0)
    return latency


def _lat_row(setting: dict, median: float, evals: int) -> dict:
    return {"setting": setting, "median_s": median, "p90_s": 1.1 * median, "mean_s": median, "images": 8,
            "network_evals": evals}


def _accuracy(start: float, slope: float, n: int = 8) -> list[dict]:
    return [{"position": k, "accuracy": max(0.0, start - slope * k), "count": 40 - 2 * k} for k in range(n)]


def _by_length(base: float, slope: float) -> list[dict]:
    rows = [{"length": n, "images": 20, "BLEU-4": base - slope * (n - 7), "CIDEr": 3 * (base - slope * (n - 7))}
            for n in range(7, 14)]
    return [{**r, "BLEU-4_low": r["BLEU-4"] - 0.03, "BLEU-4_high": r["BLEU-4"] + 0.03,
             "CIDEr_low": r["CIDEr"] - 0.1, "CIDEr_high": r["CIDEr"] + 0.1} for r in rows]


def _quantity(value: float, spread: float) -> dict:
    """One errprop quality quantity: value, interval and three recorded resamples (made-up numbers)."""
    return {"value": value, "low": value - spread, "high": value + spread,
            "samples": [value - spread, value, value + spread]}


def _injection(levels: tuple, settings: tuple, after: float, survival: float) -> list[dict]:
    """errprop.json injection rows (bench/phases/errprop.py) with made-up numbers."""
    rows = []
    for setting in settings:
        for level in levels:
            late = 0.0 if level is None else level
            for k in range(6):
                drop = 0.05 + 0.1 * late - 0.005 * k
                changed_after = after * (1 - 0.1 * k) * (1 - late / 2)
                rows.append({"setting": setting, "level": level, "position": k, "images": 30, "injections": 90,
                             "slots": 120, "slots_covered": 90, "survival_fixed": level is None,
                             "changed_before": 0.3 * (1 - late) if level is not None else 0.0,
                             "changed_after": changed_after, "net_changed_after": changed_after - 0.1,
                             "net_changed_before": 0.3 * (1 - late) if level is not None else 0.0,
                             "survival": None if level is None else min(1.0, survival + late),
                             "changed_given_survived": changed_after, "control_changed_before": 0.0,
                             "control_changed_after": 0.1, "control_survival": 1.0,
                             "quality": {"CIDEr": {"uninjected": 1.2, "injected": 1.2 - drop,
                                                   "drop": _quantity(drop, 0.03),
                                                   "substitution_drop": _quantity(0.04, 0.01),
                                                   "control_drop": _quantity(0.0, 0.0),
                                                   "propagation": _quantity(drop - 0.04, 0.03)},
                                         "BLEU-4": {"uninjected": 0.4, "injected": 0.38, "drop": _quantity(0.02, 0.01),
                                                    "substitution_drop": _quantity(0.01, 0.01),
                                                    "control_drop": _quantity(0.0, 0.0),
                                                    "propagation": _quantity(0.01, 0.01)}}})
    return rows


def _curve(rows: list[dict]) -> list[dict]:
    """injection rows per position carry no quality (the phase scores the pooled summary only) and the
    survival as measured (1 where forcing fixes it)."""
    return [{**{k: v for k, v in r.items() if k != "quality"}, "survival": 1.0 if r["survival"] is None else r["survival"]}
            for r in rows]


def _summary(rows: list[dict]) -> list[dict]:
    """injection_summary rows: the first position's numbers stand for the pooled ones."""
    return [{**{k: v for k, v in r.items() if k not in ("position", "images")}} for r in rows if r["position"] == 0]


def _job(suite: Path, label: str, model: str, paradigm: str, seed: int, order: int, params: int,
         files: dict, status: str = "ok", model_info: dict | None = None) -> dict:
    job_id = f"{label}__{TASK}__seed{seed}__{order:012d}"
    job = suite / job_id
    job.mkdir(parents=True)
    result = {"key": f"{order:012d}", "job_id": job_id, "suite": suite.name, "label": label, "model": model,
              "task": TASK, "seed": seed, "order": order, "status": status, "host": "testhost", "device": "cpu",
              "paradigm": paradigm, "parameters": params, "train_seconds": 60.0, "seconds": 100.0 + seed,
              "metrics": {"images_scored": 100}}
    if status != "ok":
        result["error"] = "RuntimeError: boom"
    if model_info is not None:  # results written before model_info was recorded lack it
        result["model_info"] = model_info
    weights = {"text": {"source": f"org/{model}-text", "identity": "dir:0123abcd"}} if model.startswith("ladic") else {}
    files = {"job.json": {"weights": weights}, **files, "result.json": result,
             "worker.json": {"pid": 1, "host": "testhost", "started": STARTED}}
    for name, payload in files.items():
        (job / name).write_text(json.dumps(payload, indent=1, sort_keys=True))
    return result


def make_suite(root: Path) -> tuple[Path, list[dict]]:
    """A results/<suite> folder with fixed numbers; returns it and its result dicts."""
    suite = root / "fixture"
    results = []
    ladic_corpus = {"BLEU-4": 0.351, "METEOR": 0.274, "ROUGE-L": 0.567, "CIDEr": 1.152}
    results.append(_job(suite, "ladic-mini", "ladic-mini", "diffusion", 0, 0, 12_345_678, {
        "scores.json": _scores(ladic_corpus, {"steps": 10, "guidance": 1.0}),
        "sweep.json": [{"knob": "steps", "value": s, "corpus": {"BLEU-4": 0.2 + 0.015 * s, "ROUGE-L": 0.5,
                                                                 "CIDEr": 0.8 + 0.035 * s},
                        "caption_seconds": 0.1 * s, "images": 100, "decode_cost": 2 * s} for s in (1, 5, 10)],
        "latency.json": _latency({"steps": 10, "guidance": 1.0}, 0.105, {
            "steps": [_lat_row({"steps": s}, 0.011 * s, 2 * s) for s in (1, 5, 10)]}),
        "errprop.json": {"unavailable": {"teacher_forced": "undefined for parallel decoding"},
                         "quality_by_length": _by_length(0.40, 0.01), "free_running": _accuracy(0.8, 0.03),
                         "injection_setup": {"settings": ["default", "back_and_refine-False"], "wrong_words": 3},
                         "injection": _curve(_injection((0.2, 0.5, 0.8), ("default", "back_and_refine-False"), 1.0, 0.2)),
                         "injection_summary": _summary(_injection((0.2, 0.5, 0.8), ("default", "back_and_refine-False"),
                                                                  1.0, 0.2)),
                         "repetition_rate": 0.02},
    }))
    for seed, shift in ((0, 0.0), (1, 0.004)):
        ar_corpus = {"BLEU-4": 0.397 + shift, "METEOR": 0.281, "ROUGE-L": 0.589, "CIDEr": 1.333 - shift}
        results.append(_job(suite, "vit-gpt2-mini", "vit-gpt2-mini", "autoregressive", seed, 1, 1_057_408, {
            "scores.json": _scores(ar_corpus, {"num_beams": 3, "max_new_tokens": 24}),
            "sweep.json": [{"knob": "num_beams", "value": b, "corpus": {"BLEU-4": 0.35 + 0.01 * b, "ROUGE-L": 0.55,
                                                                         "CIDEr": 1.2 + 0.04 * b + shift},
                            "caption_seconds": 0.2 * b, "images": 100, "decode_cost": 24 * b} for b in (1, 3)],
            "latency.json": _new_format(_latency({"num_beams": 3, "max_new_tokens": 24}, 0.2 + shift, {
                "num_beams": [{**_lat_row({"num_beams": b}, 0.08 * b + shift, 9 + b), "value": b} for b in (1, 3)],
                "length": [{**_lat_row({"min_new_tokens": n, "max_new_tokens": n}, 0.012 * n, n), "value": n}
                           for n in (8, 10, 12, 14, 16)]}), shift),
            "errprop.json": {"unavailable": {}, "quality_by_length": _by_length(0.44, 0.02),
                             "free_running": _accuracy(0.85, 0.06), "teacher_forced": _accuracy(0.9, 0.02),
                             "exposure_gap": [], "repetition_rate": 0.01,
                             "injection_setup": {"settings": ["default"], "wrong_words": 3},
                             "injection": _curve(_injection((None,), ("default",), 2.0 + seed, 1.0)),
                             "injection_summary": _summary(_injection((None,), ("default",), 2.0 + seed, 1.0))},
        }, model_info=VIT_INFO))
    nn_corpus = {"BLEU-4": 0.25, "METEOR": 0.22, "ROUGE-L": 0.5, "CIDEr": 0.8}
    results.append(_job(suite, "nearest-neighbour", "nearest-neighbour", "reference", 0, 2, 0, {
        "scores.json": _scores(nn_corpus, {}),
        "latency.json": _latency({}, 0.002, {}),
    }))
    results.append(_job(suite, "broken", "constant", "", 0, 3, 0, {}, status="failed"))
    _write_aggregates(suite, results)
    return suite, results


#: Fixed paired tests of ladic-mini (A) against vit-gpt2-mini (B) as bench/compare.py writes them:
#: metric -> (delta, low, high, p, Holm-adjusted p).
TESTS = {"BLEU-4": (-0.048, -0.07, -0.03, 0.001, 0.004), "METEOR": (-0.007, -0.02, 0.006, 0.3, 0.6),
         "ROUGE-L": (-0.022, -0.04, -0.004, 0.02, 0.04), "CIDEr": (-0.179, -0.25, -0.10, 0.001, 0.004)}


def _write_aggregates(suite: Path, results: list[dict]) -> None:
    """seeds.json and comparisons.json as bench/compare.py writes them (fixed numbers)."""
    models: dict[str, list[dict]] = {}
    for r in results:
        if r["status"] == "ok":
            models.setdefault(r["label"], []).append(r)
    rows = []
    for label, runs in models.items():
        corpora = [json.loads((suite / r["job_id"] / "scores.json").read_text())["corpus"] for r in runs]
        metrics = {}
        for m in corpora[0]:
            values = [c[m] for c in corpora]
            mean = sum(values) / len(values)
            metrics[m] = {"mean": mean, "sd": 0.003 if len(values) > 1 else 0.0, "low": mean - 0.031,
                          "high": mean + 0.029, "per_seed": values}
        rows.append({"task": TASK, "model": label, "paradigm": runs[0]["paradigm"], "learned": True,
                     "seeds": [r["seed"] for r in runs], "images": 100, "metrics": metrics})
    (suite / "seeds.json").write_text(json.dumps({"method": "two-level", "models": rows}))
    tests = [{"task": TASK, "kind": "paradigm", "model_a": "ladic-mini", "paradigm_a": "diffusion",
              "model_b": "vit-gpt2-mini", "paradigm_b": "autoregressive", "metric": m, "score_a": 0.3,
              "score_b": 0.3 - d, "delta": d, "low": lo, "high": hi, "p": p, "p_holm": ph,
              "significant": ph <= 0.05} for m, (d, lo, hi, p, ph) in TESTS.items()]
    # mBLEU-4 is lower for more diverse captions: A higher by 0.1 means B is more diverse.
    tests.append({**tests[-1], "metric": "diversity mbleu4", "higher_is_better": False, "score_a": 0.6,
                  "score_b": 0.5, "delta": 0.1, "low": 0.05, "high": 0.15, "p": 0.001, "p_holm": 0.005})
    (suite / "comparisons.json").write_text(json.dumps({"method": "paired two-level bootstrap",
                                                        "n_resamples": 1000, "tests": tests}))


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("report")
    suite, results = make_suite(root)
    paths = build_report(suite, results, commit="0123456789ab")
    return suite, paths


def _hashes(paths: list[Path]) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def test_files_written(report):
    suite, paths = report
    names = {p.name for p in paths}
    for kind in ("main", "latency"):
        assert {f"{TASK}-{kind}.{ext}" for ext in ("md", "tex", "csv")} <= names
    figures = {n for n in names if n.endswith((".png", ".pdf"))}
    for name in ("quality_vs_steps", "quality_vs_num_beams", "quality_vs_latency", "latency_vs_length",
                 "quality_by_length", "exposure_gap", "error_injection"):
        assert {f"{TASK}-{name}.png", f"{TASK}-{name}.pdf"} <= figures
    for path in paths:
        assert path.is_file() and path.stat().st_size > 0
    for png in (p for p in paths if p.suffix == ".png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    for pdf in (p for p in paths if p.suffix == ".pdf"):
        assert pdf.read_bytes()[:5] == b"%PDF-"


def _body_rows(tex: str) -> tuple[list[str], list[str]]:
    """Measured rows (between the first and second \\midrule) and the rows after the reported header."""
    lines = tex.splitlines()
    rules = [i for i, line in enumerate(lines) if line == "\\midrule"]
    bottom = lines.index("\\bottomrule")
    measured = [line for line in lines[rules[0] + 1: rules[1]] if line.endswith("\\\\")]
    reported = [line for line in lines[rules[1] + 2: bottom] if line.endswith("\\\\")]
    return measured, reported


def test_latex_main_table_well_formed(report):
    suite, _ = report
    tex = (suite / "report" / f"{TASK}-main.tex").read_text()
    body = re.sub(r"\\[{}]", "", tex)  # escaped braces are text, not grouping
    depth = 0
    for ch in body:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    assert tex.count("\\toprule") == 1 and tex.count("\\bottomrule") == 1
    assert tex.index("\\toprule") < tex.index("\\midrule") < tex.index("\\bottomrule")
    assert tex.count("\\begin{tabular}") == tex.count("\\end{tabular}") == 1
    measured, reported = _body_rows(tex)
    assert [row.split(" & ")[0] for row in measured] == ["ladic-mini", "vit-gpt2-mini", "nearest-neighbour"]
    columns = re.search(r"\\begin\{tabular\}\{(\w+)\}", tex).group(1)
    for row in measured + reported:
        assert row.count(" & ") == len(columns) - 1
    assert "\\emph{reported" in tex and len(reported) == len(load_published(
        REPO / "results" / "reference" / "published.yaml").rows)
    # Intervals on every measured metric; SPICE unavailable everywhere.
    for row in measured:
        cells = row.removesuffix(" \\\\").split(" & ")
        assert all("{\\scriptsize [" in c for c in cells[4:8]) and cells[8] == "--"
    # Bold: the best measured value per column, never a reported one.
    ladic, vit, nn = (row.split(" & ") for row in measured)
    assert vit[4].startswith("\\textbf{39.9}")  # BLEU-4: mean of 39.7 and 40.1 over two seeds
    assert vit[7].startswith("\\textbf{133.1}")  # CIDEr
    assert not any("\\textbf" in c for c in ladic[4:] + nn[4:])
    assert not any("\\textbf" in row for row in reported)
    assert "broken seed 0" in tex and "0123456789ab" in tex and "2025-10-09" in tex
    assert "Mean over training seeds for vit-gpt2-mini (2)" in tex and "two-level" in tex


def test_markdown_and_csv(report):
    suite, _ = report
    md = (suite / "report" / f"{TASK}-main.md").read_text()
    assert "**133.1** [" in md and "115.2 [" in md and "**Reported**" in md
    measured_table = md.split("**Reported**")[0]
    assert "LaDiC, 30 steps" not in measured_table  # reported numbers never mixed with measured ones
    rows = list(csv.DictReader(io.StringIO((suite / "report" / f"{TASK}-main.csv").read_text()), ))
    rows = [r for r in rows if not r["model"].startswith("#")]
    measured = [r for r in rows if r["source"] == "measured"]
    assert [r["model"] for r in measured] == ["ladic-mini", "vit-gpt2-mini", "nearest-neighbour"]
    assert float(measured[1]["CIDEr_low"]) < float(measured[1]["CIDEr"]) < float(measured[1]["CIDEr_high"])
    assert measured[1]["CIDEr_best"] == "1" and measured[0]["CIDEr_best"] == "0"
    # pre-training as the variant declares it; results without model_info say "unknown"
    assert [r["pretraining"] for r in measured] == ["unknown", "none", "unknown"]
    assert all(r["source"].startswith("reported: ") for r in rows[3:]) and len(rows) > 3
    footer = [line for line in (suite / "report" / f"{TASK}-main.csv").read_text().splitlines()
              if line.startswith("# ")]
    assert [line.split(":")[0] for line in footer][:7] == ["# commit", "# packages", "# hardware", "# date",
                                                           "# images", "# seeds", "# weights"]
    assert footer[6] == "# weights: org/ladic-mini-text (dir:0123abcd)"  # from the jobs' job.json
    assert "# numerics: unrecorded" in footer  # these hand-made results record no environment


def test_latency_table(report):
    suite, _ = report
    md = (suite / "report" / f"{TASK}-latency.md").read_text()
    assert "default (steps=10)" in md and "steps=5" in md and "num_beams=3" in md and "length=16" in md
    assert "default (num_beams=3)" in md  # named by the cost knob vit-gpt2 declares
    vit = next(line for line in md.splitlines() if "default (num_beams=3)" in line)
    cells = [c.strip() for c in vit.strip("|").split("|")]
    assert cells[4] == "4.0" and cells[7:10] == ["10", "9", "float32"]  # IQR ms (seeds averaged), evals, tokens
    ladic = next(line for line in md.splitlines() if "default (steps=10)" in line)
    assert [c.strip() for c in ladic.strip("|").split("|")][4] == "–"  # one repeat recorded: no spread
    assert "105.0" in md and "(batch 16)" in md  # 64 ran out of memory: the largest measured is 16
    tex = (suite / "report" / f"{TASK}-latency.tex").read_text()
    assert "\\toprule" in tex and "\\bottomrule" in tex and "Test CPU" in tex
    for name in ("main", "latency"):
        for ext in ("md", "tex", "csv"):
            text = (suite / "report" / f"{TASK}-{name}.{ext}").read_text()
            assert "commit" in text and "torch 2.13.0+cpu" in text and "2025-10-09" in text, (name, ext)


def test_byte_identical_across_runs(tmp_path, report):
    suite, first = report
    again = build_report(suite, make_suite(tmp_path)[1], commit="0123456789ab", out_dir=tmp_path / "again")
    assert _hashes(first) == _hashes(again)


def test_reported_rows_only_for_their_task(tmp_path):
    suite, results = make_suite(tmp_path)
    for r in results:
        r["task"] = "shapes"
    paths = build_report(suite, results, formats=["tex"], commit="x", figures=False)
    tex = next(p for p in paths if p.name == "shapes-main.tex").read_text()
    assert "reported" not in tex and "LaDiC, 5 steps" not in tex


def test_published_file_is_reported_only():
    published = load_published(REPO / "results" / "reference" / "published.yaml")
    assert published.task == "coco"
    assert all(r["source"].startswith(("paper:", "repository:")) for r in published.rows)
    ladic30 = next(r for r in published.rows if r["model"] == "LaDiC, 30 steps")
    assert ladic30["metrics"] == {"BLEU-4": 38.2, "CIDEr": 126.2, "METEOR": 29.5, "SPICE": 22.4, "ROUGE-L": 58.7}


def test_tex_escape():
    assert tex_escape("a_b & 5% #1 {x}") == "a\\_b \\& 5\\% \\#1 \\{x\\}"


def test_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="unknown report format"):
        build_report(tmp_path, [], formats=["html"])


def test_git_commit_of_this_checkout():
    from bench.report.footer import git_commit

    commit = git_commit()
    assert commit == "unknown" or re.fullmatch(r"[0-9a-f]{12}", commit)


def _tick_labels_overlap(fig) -> list[str]:
    """Pairs of tick labels (in view) whose drawn boxes intersect, per axis."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    clashes = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            boxes = [(label.get_text(), label.get_window_extent(renderer))
                     for label in axis.get_majorticklabels() if label.get_text()]  # the labels in view
            clashes += [f"{a} / {b}" for i, (a, box) in enumerate(boxes) for b, other in boxes[i + 1:]
                        if box.overlaps(other)]
    return clashes


def test_figures_legible_with_a_networkless_reference(tmp_path):
    """A constant captioner (no network, microseconds) neither stretches the latency axis nor
    crowds its labels; no figure has tick labels running into each other."""
    import matplotlib
    import seaborn as sns

    from bench.report.data import load_entries
    from bench.report.figures import figure_drawers
    from bench.report.plotting import RC, model_styles

    suite, results = make_suite(tmp_path)
    constant = _latency({}, 1e-6, {})
    constant["batch1"]["network_evals"] = 0
    results.append(_job(suite, "constant", "constant", "reference", 0, 4, 0, {
        "scores.json": _scores({"BLEU-4": 0.0, "CIDEr": 0.45}, {}), "latency.json": constant}))
    entries, _ = load_entries(suite, results)
    styles = model_styles([e.label for e in entries])
    with sns.axes_style("whitegrid"), matplotlib.rc_context(RC):
        drawn = {name: draw(entries, styles) for name, draw in figure_drawers(entries).items()}
        assert {"quality_vs_steps", "quality_vs_num_beams", "quality_vs_latency", "latency_vs_length"} <= set(drawn)
        for name, fig in drawn.items():
            if fig is not None:
                assert not _tick_labels_overlap(fig), name
        ax = drawn["quality_vs_latency"].axes[0]
        assert ax.get_xlim()[0] > 1  # ms: the constant is a dotted line at its CIDEr, not a point at 0.001
        assert any(abs(line.get_ydata()[0] - 45.0) < 1e-9 for line in ax.get_lines() if len(line.get_ydata()))
        assert ax.get_xlabel() == "latency (ms / image, batch 1)"
        assert drawn["quality_vs_num_beams"].axes[0].get_xlabel() == "beam size"  # the declared label


def test_intervals_are_the_two_level_ones_of_seeds_json(report, tmp_path):
    suite, _ = report
    md = (suite / "report" / f"{TASK}-main.md").read_text()
    # vit-gpt2-mini's CIDEr: mean 133.1 of its two seeds, seeds.json bounds mean - 3.1, mean + 2.9.
    assert "**133.1** [130.0, 136.0]" in md
    # Without seeds.json a multi-seed row gets no interval (never the mean of per-seed bounds).
    bare, results = make_suite(tmp_path)
    (bare / "seeds.json").unlink()
    build_report(bare, results, formats=["md"], commit="0", figures=False)
    md = (bare / "report" / f"{TASK}-main.md").read_text()
    vit = next(line for line in md.splitlines() if line.startswith("| vit-gpt2-mini"))
    assert "[" not in vit and "115.2 [" in md  # one seed: the eval phase's image interval
    assert "No interval for vit-gpt2-mini" in md


def test_verdict_table(report):
    suite, paths = report
    assert {f"{TASK}-verdict.{ext}" for ext in ("md", "tex", "csv")} <= {p.name for p in paths}
    rows = list(csv.DictReader(io.StringIO((suite / "report" / f"{TASK}-verdict.csv").read_text())))
    by_axis = {r["axis"]: r for r in rows if not r["axis"].startswith("#")}
    cider = by_axis["CIDEr"]
    assert cider["A"] == "diffusion: ladic-mini" and cider["B"] == "autoregressive: vit-gpt2-mini"
    assert (cider["A - B"], cider["interval (Holm-adjusted)"], cider["p (Holm)"]) == (
        "-17.9", "[-25.0, -10.0] (unadjusted)", "0.004")  # a fixture without adjusted intervals: labelled so
    assert cider["verdict"] == "autoregressive ahead (vit-gpt2-mini beats every diffusion model)"
    assert by_axis["METEOR"]["verdict"] == "no significant difference"
    # diversity is compared at matched quality (tests/test_diversity.py), not by the unmatched paired test
    assert "diversity: mBLEU-4 (lower: more diverse)" not in by_axis
    # Fronts (CIDEr, ms): ladic-mini (83.5, 11), (97.5, 55), (115.0, 110); vit-gpt2-mini, mean over seeds,
    # (124.2, 82), (132.2, 242). Their CIDEr ranges do not overlap: no common target, and vit-gpt2-mini's
    # best is out of ladic-mini's reach (said so, never extrapolated).
    latency = by_axis["latency at CIDEr 132.2 (batch 1, along each front)"]
    assert latency["A"] == "diffusion: ladic-mini unreachable" and latency["B"] == "autoregressive: vit-gpt2-mini 242.0 ms"
    assert latency["verdict"] == "not tested (ladic-mini cannot reach it)"
    # The dual at 110 ms, inside both latency ranges: 115.0 against 124.2 + 8 * ln(110/82) / ln(242/82).
    dual = by_axis["CIDEr at 110.0 ms (batch 1, along each front)"]
    assert dual["A - B"] == "-11.4" and "autoregressive better at equal latency" in dual["verdict"]
    assert "error propagation: repetition rate (raw output)" not in by_axis  # not in result.json metrics
    tex = (suite / "report" / f"{TASK}-verdict.tex").read_text()
    assert "\\toprule" in tex and "autoregressive ahead" in tex and "no significant difference" in tex
    report_md = (suite / "report" / f"{TASK}-report.md").read_text()
    assert report_md.index("## Verdict") < report_md.index("## Caption quality")


def test_verdict_error_propagation_is_descriptive(tmp_path):
    suite, results = make_suite(tmp_path)
    build_report(suite, results, formats=["csv"], commit="0", figures=False)
    rows = list(csv.DictReader(io.StringIO((suite / "report" / f"{TASK}-verdict.csv").read_text())))
    errprop = {r["A"]: r for r in rows if r["axis"].startswith("error propagation: CIDEr lost beyond")}
    # every model and level on its own, none picked as the best; default probe setting only
    assert set(errprop) == {"diffusion: ladic-mini (0.2; seeds 0)", "diffusion: ladic-mini (0.5; seeds 0)",
                            "diffusion: ladic-mini (0.8; seeds 0)", "autoregressive: vit-gpt2-mini (when generated; seeds 0 1)"}
    late = errprop["diffusion: ladic-mini (0.8; seeds 0)"]  # propagation 0.13 - 0.04 = 0.09, interval [0.06, 0.12]
    assert (late["A - B"], late["interval (Holm-adjusted)"]) == ("+9.0", "[+6.0, +12.0] (unadjusted)")
    assert late["verdict"] == "not tested: propagates: loses more than the substituted word"
    # 0.05 - 0.04 = 0.01 with resamples -0.02, 0.01, 0.04 for both seeds: the interval holds 0
    vit = errprop["autoregressive: vit-gpt2-mini (when generated; seeds 0 1)"]
    assert vit["A - B"] == "+1.0" and vit["verdict"] == "not tested: no evidence either way (interval contains 0)"
    repetition = next(r for r in rows if r["axis"] == "repetition rate (raw output), every model")
    assert repetition["A"].startswith("diffusion: ladic-mini ") and repetition["B"].startswith("autoregressive: vit")
