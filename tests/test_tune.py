"""`python -m bench.tune`: decoding settings compared on the validation split of a finished job."""

import json

import pytest
import torch

from bench.tune import main, parse_grid


def test_grid_values_are_yaml_scalars_and_bad_items_are_named():
    assert parse_grid(["steps=2,4", "remasking=random", "threshold=0,0.9"]) == {
        "steps": [2, 4], "remasking": ["random"], "threshold": [0, 0.9]}
    for bad in (["steps"], ["steps="], ["steps=2", "steps=4"]):
        with pytest.raises(ValueError, match="steps"):
            parse_grid(bad)


@pytest.mark.java
def test_tune_prints_one_scored_row_per_setting_best_first(tiny_shapes, tiny_shapes_root, tmp_path, capsys):
    from models.masked_diffusion.captioner import MaskedDiffusionCaptioner

    torch.manual_seed(0)
    model = MaskedDiffusionCaptioner(MaskedDiffusionCaptioner.variant_config("mdm-tiny"))
    model.prepare(tiny_shapes.samples("train"))
    model.save(tmp_path / "job" / "model")
    options = {"seed": 1, "train": 40, "val": 6, "test": 12, "root": str(tiny_shapes_root)}
    (tmp_path / "job" / "job.json").write_text(json.dumps({"model": "mdm-tiny", "task_class": "shapes",
                                                           "task_options": options}))
    assert main([str(tmp_path / "job"), "--grid", "steps=1,4", "--grid", "remasking=low_confidence,random",
                 "--grid", "threshold=0,0.5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "| steps | remasking | threshold | CIDEr | BLEU-4 | network evals |"
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert len(rows) == 8
    refused = [r for r in rows if r[3].startswith("refused")]
    assert [(r[1], r[2]) for r in refused] == [("random", "0.5"), ("random", "0.5")]
    scored = [r for r in rows if r not in refused]
    assert rows[:6] == scored  # scored rows first, best CIDEr first
    assert [float(r[3]) for r in scored] == sorted((float(r[3]) for r in scored), reverse=True)
    assert {r[5] for r in scored if r[0] == "1" and r[2] == "0.0"} == {"1.0"}  # one network call per caption

    assert main([str(tmp_path / "job"), "--grid", "stepz=1"]) == 2
    assert "stepz" in capsys.readouterr().err
