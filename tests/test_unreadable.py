"""Bad test images and failing late phases: every phase skips and counts the same images, and a phase
after eval that fails keeps every result before it (the job ends `partial`, a rerun redoes that phase).

Datasets are written here in the Karpathy format (dataset_*.json and an image folder) with one truncated
JPEG (real JPEG bytes, cut) and one missing file in the test split.
"""

from __future__ import annotations

import io
import json
import random
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from bench.config import load_config
from bench.results import read_json
from bench.suite import run_suite

pytestmark = pytest.mark.java

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 200, 30)}
CORRUPT, MISSING = "test_corrupt", "test_missing"  # file stems = image ids of a Karpathy set without cocoid


def _jpeg(colour: str, seed: int) -> bytes:
    rng = random.Random(seed)
    base = COLOURS[colour]
    pixels = bytes(max(0, min(255, base[i % 3] + rng.randint(-30, 30))) for i in range(32 * 32 * 3))
    out = io.BytesIO()
    Image.frombytes("RGB", (32, 32), pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def write_karpathy_set(root: Path, train: int = 12, val: int = 2, test: int = 6) -> dict[str, Path]:
    """dataset_tiny.json + images/ with a truncated JPEG second and a missing file last in the test split."""
    names = [f"train_{n}" for n in range(train)] + [f"val_{n}" for n in range(val)] + \
        [f"test_{n}" for n in range(test - 2)]
    names.insert(train + val + 1, CORRUPT)
    names.append(MISSING)
    images = root / "images"
    images.mkdir(parents=True)
    entries = []
    for n, stem in enumerate(names):
        colour = list(COLOURS)[n % len(COLOURS)]
        raws = [f"a {colour} square", f"A picture that is mostly {colour}.", f"{colour} noise"]
        entries.append({"filename": f"{stem}.jpg", "imgid": n, "split": stem.split("_")[0],
                        "sentences": [{"raw": r, "tokens": r.lower().strip(".").split(), "imgid": n,
                                       "sentid": 3 * n + k} for k, r in enumerate(raws)]})
        data = _jpeg(colour, n)
        if stem == CORRUPT:
            (images / f"{stem}.jpg").write_bytes(data[: len(data) * 2 // 3])  # a download cut short
        elif stem != MISSING:
            (images / f"{stem}.jpg").write_bytes(data)
    split_file = root / "dataset_tiny.json"
    split_file.write_text(json.dumps({"dataset": "tiny", "images": entries}))
    return {"split_file": split_file, "image_root": images}


def _config(tmp_path: Path, paths: dict[str, Path], models: str, phases: str = "[train, eval, latency, errprop]"):
    path = tmp_path / "bench.yaml"
    path.write_text(textwrap.dedent(f"""\
        results_dir: {tmp_path / 'results'}
        executor: {{kind: local}}
        tracking: {{kind: none}}
        tasks:
          tiny: {{type: karpathy, name: tiny, split_file: {paths['split_file']}, image_root: {paths['image_root']}}}
        suites:
          bad:
            tasks: [tiny]
            phases: {phases}
            train: {{epochs: 1, batch_size: 4, lr: 1.0e-3}}
            eval: {{batch_size: 4, bootstrap: 20}}
            latency: {{images: 3, warmup: 0, batch_sizes: [1, 2], num_beams: [1], lengths: [4], steps: [1]}}
            errprop: {{images: 3, positions: 2, batch_size: 4}}
            models: [{models}]
        """))
    return load_config(path)


@pytest.fixture(autouse=True)
def _no_meteor(monkeypatch):
    """METEOR's JVM loads its paraphrase tables for 15-30 s per job; what is tested here does not need it
    (tests/test_quality.py scores METEOR), so these suites score everything else."""
    import bench.metrics.quality as quality

    scorers = quality._scorers
    monkeypatch.setattr(quality, "_scorers", lambda metrics: scorers(tuple(m for m in metrics if m != "METEOR")))


def _counted(report: dict) -> tuple[list[str], list[str]]:
    return report["images_unreadable"], report["images_missing"]


def test_a_suite_with_a_corrupt_and_a_missing_test_image_finishes_and_counts_both(tmp_path):
    paths = write_karpathy_set(tmp_path / "data")
    # The constant captioner generates nothing to probe: errprop is not one of its phases.
    cfg = _config(tmp_path, paths, "{name: constant, phases: [train, eval, latency]}, vit-gpt2-tiny")
    results = run_suite(cfg, "bad", echo=lambda _: None)
    assert [r["status"] for r in results] == ["ok", "ok"], [r.get("error") for r in results]
    for result in results:
        job_dir = cfg.results_dir / "bad" / result["job_id"]
        scores = read_json(job_dir / "scores.json")
        assert _counted(scores) == ([CORRUPT], [MISSING]) and scores["images_scored"] == 4
        assert result["metrics"]["images_skipped"] == 2 and "CIDEr" in result["metrics"]
        for phase in ("latency", "errprop")[: len(result["phases"]) - 2]:
            report = read_json(job_dir / f"{phase}.json")
            assert _counted(report) == ([CORRUPT], [MISSING]), phase
            assert report["images"] == 3, phase  # the first three readable images, the corrupt one passed over
        assert "phase_errors" not in result


def test_a_failing_latency_phase_keeps_the_scores_and_a_rerun_redoes_only_it(tmp_path, monkeypatch):
    import bench.metrics.latency as latency
    from bench.report.data import load_entries
    from bench.results import collect

    paths = write_karpathy_set(tmp_path / "data")
    cfg = _config(tmp_path, paths, "vit-gpt2-tiny", phases="[eval, latency, errprop]")

    def broken(*args, **kwargs):
        raise OSError("Truncated File Read")

    monkeypatch.setattr(latency, "batch1_latency", broken)
    messages: list[str] = []
    (result,) = run_suite(cfg, "bad", echo=messages.append)
    job_dir = cfg.results_dir / "bad" / result["job_id"]
    assert result["status"] == "partial"
    error = result["phase_errors"]["latency"]
    assert error["type"] == "OSError" and error["message"] == "Truncated File Read"
    assert "batch1_latency" in error["traceback"] or "broken" in error["traceback"]
    assert "latency phase: OSError: Truncated File Read" in result["error"]
    assert read_json(job_dir / "result.json")["metrics"]["CIDEr"] == read_json(job_dir / "scores.json")["corpus"]["CIDEr"]
    assert "CIDEr_ci_low" in result["metrics"]  # the bootstrap ran too
    assert (job_dir / "errprop.json").is_file() and "repetition_rate" in result["metrics"]  # later phases ran
    assert not (job_dir / "latency.json").exists()
    assert any("PARTIAL (latency phase: OSError" in m for m in messages)
    summary = (cfg.results_dir / "bad" / "summary.csv").read_text()
    assert ",partial," in summary and str(round(100 * result["metrics"]["CIDEr"], 1)) in summary
    entries, failed = load_entries(cfg.results_dir / "bad", collect(cfg.results_dir / "bad"))
    assert [e.label for e in entries] == ["vit-gpt2-tiny"] and failed == []

    monkeypatch.undo()
    (again,) = run_suite(cfg, "bad", echo=messages.append)
    assert again["status"] == "ok" and "phase_errors" not in again and "error" not in again
    log = (job_dir / "log.txt").read_text()
    assert "scores found; not captioning again" in log and "errprop found; not measuring again" in log
    assert (job_dir / "latency.json").is_file() and "latency_median_s" in again["metrics"]
    assert again["metrics"]["CIDEr"] == result["metrics"]["CIDEr"]
