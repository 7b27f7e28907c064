"""NoCaps validation (tasks/nocaps.py): its captions file with the domain field, per-domain splits,
`bench data check`, and `bench score` rows per domain."""

from __future__ import annotations

import json

import pytest

from tasks.karpathy import DatasetError
from tasks.nocaps import NocapsTask

DOMAIN = {0: "in-domain", 1: "in-domain", 2: "near-domain", 3: "near-domain", 4: "out-domain", 5: "out-domain"}
WORDS = {0: "a red bus on a street", 1: "a man riding a horse", 2: "a red panda in a tree",
         3: "a dog next to a lighthouse", 4: "a jellyfish in blue water", 5: "a violin on a table"}


def make_nocaps(root, absent=(5,)):
    from PIL import Image

    (root / "val").mkdir(parents=True)
    images, anns = [], []
    for i, domain in DOMAIN.items():
        name = f"{i:016x}.jpg"
        images.append({"id": i, "open_images_id": f"{i:016x}", "file_name": name, "height": 8, "width": 8,
                       "coco_url": f"https://s3.amazonaws.com/nocaps/val/{name}", "license": 0, "domain": domain})
        anns += [{"image_id": i, "id": 10 * i + k, "caption": f"{WORDS[i]} {tail}".strip()}
                 for k, tail in enumerate(("", "today", "in the picture"))]
        if i not in absent:
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(root / "val" / name)
    (root / "nocaps_val_4500_captions.json").write_text(json.dumps(
        {"licenses": [], "info": {}, "images": images, "annotations": anns}))
    return root


def test_splits_domains_and_references(tmp_path):
    task = NocapsTask(root=make_nocaps(tmp_path / "nocaps"))
    assert [s.image_id for s in task.listed("val")] == ["0", "1", "2", "3", "4", "5"]
    assert [s.image_id for s in task.samples("val-out-domain")] == ["4"]  # 5 is absent on disk
    assert task.missing("val-out-domain") == ["5"]
    assert task.references("val-near-domain") == {"2": [WORDS[2], f"{WORDS[2]} today", f"{WORDS[2]} in the picture"],
                                                  "3": [WORDS[3], f"{WORDS[3]} today", f"{WORDS[3]} in the picture"]}
    assert task.subsets("val") == {"in-domain": "val-in-domain", "near-domain": "val-near-domain",
                                   "out-domain": "val-out-domain"}
    assert task.samples("train") == [] and task.references("test") == {}
    with pytest.raises(DatasetError, match="unknown split 'val-far'"):
        task.listed("val-far")


def test_bad_captions_file_is_named(tmp_path):
    root = make_nocaps(tmp_path / "nocaps")
    path = root / "nocaps_val_4500_captions.json"
    data = json.loads(path.read_text())
    data["images"][2]["domain"] = "far-domain"
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"images\[2\] has domain 'far-domain'"):
        NocapsTask(root=root).listed("val")
    del data["images"][2]["domain"]
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"images\[2\] lacks key 'domain'"):
        NocapsTask(root=root).listed("val")


def test_data_check_counts_and_names_the_missing_image(tmp_path, capsys):
    from bench.cli import main

    root = make_nocaps(tmp_path / "nocaps")
    code = main(["data", "check", "--task", "nocaps", "--root", str(root), "--config", str(tmp_path / "none.yaml")])
    out = capsys.readouterr().out
    assert code == 1  # 6 listed where the full split has 4,500, and one image missing
    assert "4,500 expected" in out and "1 image(s) missing" in out


@pytest.mark.java
@pytest.mark.slow
def test_score_adds_a_row_per_domain_with_paired_tests(tmp_path):
    from bench.config import load_config
    from bench.results import read_json
    from bench.score import ScoreRequest, run_score

    root = make_nocaps(tmp_path / "nocaps", absent=())
    config = tmp_path / "bench.yaml"
    config.write_text(f"results_dir: {tmp_path / 'results'}\ntasks:\n  nocaps: {{root: {root}}}\n"
                      "executor: {kind: local}\ntracking: {kind: none}\nsuites:\n  outside:\n    tasks: [nocaps]\n"
                      "    models: [constant]\n")
    cfg = load_config(config)
    for label, paradigm, tail in (("d", "diffusion", " today"), ("a", "autoregressive", " here")):
        path = tmp_path / f"{label}.json"
        path.write_text(json.dumps([{"image_id": i, "caption": WORDS[i] + tail} for i in DOMAIN]))
        written, errors = run_score(cfg, ScoreRequest("outside", "nocaps", "val", label, paradigm, [path],
                                                      bootstrap=100, extras={"clip": "none"}), lambda _: None)
        assert not errors and [r["task"] for r in written] == ["nocaps", "nocaps:in-domain", "nocaps:near-domain",
                                                               "nocaps:out-domain"]
    suite_dir = cfg.results_dir / "outside"
    tests = read_json(suite_dir / "comparisons.json")["tests"]
    cider = {t["task"]: t for t in tests if t["metric"] == "CIDEr" and t["kind"] == "paradigm"}
    assert set(cider) == {"nocaps", "nocaps:in-domain", "nocaps:near-domain", "nocaps:out-domain"}
    assert cider["nocaps:out-domain"]["images"] == 2 and cider["nocaps"]["images"] == 6
    seeds = {(r["task"], r["model"]): r for r in read_json(suite_dir / "seeds.json")["models"]}
    iv = seeds["nocaps:in-domain", "d"]["metrics"]["CIDEr"]
    assert iv["low"] <= iv["mean"] <= iv["high"]
