"""`bench reproduce` (bench/reproduce.py): rerun a finished job elsewhere, compare, never touch the original."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from bench.cli import main
from bench.config import load_config
from bench.reproduce import compare_captions, compare_metrics, sample
from bench.suite import run_suite

SUITE = """
executor: {kind: local}
tracking: {kind: none}
suites:
  mini:
    tasks: [shapes]
    phases: [train, eval]
    eval: {batch_size: 12, bootstrap: 0}
    models: [constant, nearest-neighbour]
"""


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_metric_and_caption_comparison_by_hand():
    assert compare_metrics({"CIDEr": 1.0, "BLEU-4": 0.5, "latency_median_s": 0.1},
                           {"CIDEr": 1.0, "BLEU-4": 0.4, "latency_median_s": 0.2}) == {"BLEU-4": (0.5, 0.4)}
    n, first = compare_captions([{"image_id": 1, "caption": "a"}, {"image_id": 2, "caption": "b"}],
                                [{"image_id": 1, "caption": "a"}, {"image_id": 2, "caption": "c"}])
    assert (n, first) == (1, [(2, "b", "c")])
    assert sample([Path(str(i)) for i in range(10)], 3) == [Path("0"), Path("4"), Path("9")]


@pytest.mark.java
@pytest.mark.slow
def test_reproduce_says_identical_then_names_what_differs(write_config, capsys):
    path = write_config(SUITE)
    results = run_suite(load_config(path), "mini", echo=lambda _: None)
    job_dir = Path(load_config(path).results_dir) / "mini" / results[1]["job_id"]
    before = _digests(job_dir)

    assert main(["reproduce", str(job_dir)]) == 0
    assert f"{job_dir.name}: identical" in capsys.readouterr().out
    assert _digests(job_dir) == before  # never writes into the job it checks

    captions = json.loads((job_dir / "captions.json").read_text())
    captions[0]["caption"] = "a changed caption"
    (job_dir / "captions.json").write_text(json.dumps(captions))
    result = json.loads((job_dir / "result.json").read_text())
    result["metrics"]["CIDEr"] += 0.5
    result["environment"]["kernels"]["torch_cpu_capability"] = "AVX512"
    (job_dir / "result.json").write_text(json.dumps(result))
    assert main(["reproduce", str(job_dir)]) == 1
    out = capsys.readouterr().out
    assert "DIFFERENT" in out and "metric CIDEr" in out and "a changed caption" in out
    assert "kernels.torch_cpu_capability: 'AVX512' -> 'AVX2'" in out

    assert main(["reproduce", "--suite", "mini", "--config", str(path), "--jobs", "1"]) == 0
    assert capsys.readouterr().out.count("identical") == 1  # the first job (constant), untouched


def test_reproduce_refuses_a_folder_without_a_job(tmp_path, capsys):
    assert main(["reproduce", str(tmp_path)]) == 2
    assert "no finished result" in capsys.readouterr().err
