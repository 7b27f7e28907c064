"""Config checked before any work: knobs, overrides, task options, splits, data roots, paths, labels."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from PIL import Image

from bench.config import ConfigError, load_config
from bench.validate import validate_suite

SUITE = """
executor: {{kind: local}}
tracking: {{kind: none}}
suites:
  mini:
    tasks: [shapes]
    phases: [train, eval]
    models:
      - constant
      - {model}
"""


def _check(write_config, model: str, suite: str = SUITE):
    cfg = load_config(write_config(suite.format(model=model)))
    with pytest.raises(ConfigError) as err:
        validate_suite(cfg, "mini")
    return str(err.value)


def test_misspelt_decoding_knob_names_key_model_accepted_knobs_and_a_guess(write_config):
    message = _check(write_config, "{name: vit-gpt2-tiny, decoding: {nm_beams: 3}}")
    for fragment in ("suites.mini.models.1.decoding", "'nm_beams'", "did you mean 'num_beams'",
                     "vit-gpt2-tiny", "accepted: max_new_tokens, min_new_tokens, num_beams"):
        assert fragment in message, (fragment, message)


def test_sweep_keys_and_values_are_knobs_of_the_model(write_config):
    message = _check(write_config, "{name: ladic-tiny, decoding: {sweep: {step: [1, 2]}}}")
    assert "decoding.sweep" in message and "did you mean 'steps'" in message and "ladic-tiny" in message
    message = _check(write_config, "{name: ladic-tiny, decoding: {sweep: {steps: [1, two]}}}")
    assert "decoding.sweep.steps" in message and "expected int" in message
    message = _check(write_config, "{name: ladic-tiny, decoding: {sweep: {steps: 5}}}")
    assert "decoding.sweep" in message and "non-empty list" in message


def test_wrong_knob_type_is_named(write_config):
    message = _check(write_config, "{name: ladic-tiny, decoding: {back_and_refine: maybe}}")
    assert "decoding.back_and_refine" in message and "expected bool" in message


def test_model_overrides_are_fields_of_the_captioner_config(write_config):
    message = _check(write_config, "{name: ladic-tiny, overrides: {augmnt: crop}}")
    for fragment in ("suites.mini.models.1.overrides.augmnt", "did you mean 'augment'", "LaDiCConfig",
                     "accepted:", "train_decoder_layers"):
        assert fragment in message, (fragment, message)


def test_task_options_are_the_task_constructor_arguments(write_config):
    path = write_config(SUITE.format(model="nearest-neighbour"))
    cfg = load_config(path, ["tasks.shapes.tset=5"])
    with pytest.raises(ConfigError) as err:
        validate_suite(cfg, "mini")
    message = str(err.value)
    for fragment in ("tasks.shapes.tset", "did you mean 'test'", "accepted:", "seed", "train", "val"):
        assert fragment in message, (fragment, message)


def test_labels_sharing_a_folder_name_are_rejected(write_config):
    suite = SUITE.replace("- constant", '- {{name: constant, label: "Const (a)"}}')
    message = _check(write_config, '{name: constant, label: "Const [a]"}', suite)
    assert "Const (a)" in message and "Const [a]" in message and "same folder name" in message


def test_results_dir_that_cannot_be_created_is_a_config_error(write_config, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cfg = load_config(write_config(SUITE.format(model="nearest-neighbour")), [f"results_dir={blocker}/results"])
    with pytest.raises(ConfigError, match="results_dir: cannot create"):
        validate_suite(cfg, "mini")


def test_config_file_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "bench.yaml"
    path.write_bytes("suites: {mini: {tasks: [shapes], models: [constant], description: \"caf\xe9\"}}"
                     .encode("latin-1"))
    with pytest.raises(ConfigError, match=r"bench.yaml: not UTF-8"):
        load_config(path)


def _karpathy(tmp_path, splits: dict[str, int]):
    """A Karpathy-format set with `splits[name]` images in each split (images written)."""
    root = tmp_path / "karpathy"
    (root / "images").mkdir(parents=True)
    images = []
    for split, n in splits.items():
        for i in range(n):
            name = f"{split}{i}.png"
            Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(root / "images" / name)
            images.append({"filename": name, "split": split, "sentences": [{"raw": f"a red square {i}"}]})
    (root / "dataset.json").write_text(json.dumps({"images": images}))
    return root


def test_empty_split_is_an_error_naming_task_and_split(write_config, tmp_path):
    root = _karpathy(tmp_path, {"val": 2, "test": 2})
    suite = SUITE.format(model="nearest-neighbour").replace("tasks: [shapes]", "tasks: [tiny]")
    suite = (f"tasks:\n  tiny: {{type: karpathy, split_file: {root}/dataset.json, image_root: {root}/images}}\n"
             + suite)
    path = write_config("")
    path.write_text(suite.replace("results_dir", "results_dir") + f"results_dir: {tmp_path / 'results'}\n")
    with pytest.raises(ConfigError) as err:
        validate_suite(load_config(path), "mini")
    assert "tasks.tiny" in str(err.value) and "train split is empty" in str(err.value)


def test_missing_dataset_root_is_reported_once_before_any_executor(tmp_path, monkeypatch):
    monkeypatch.delenv("COCO_ROOT", raising=False)
    path = tmp_path / "bench.yaml"
    path.write_text(f"results_dir: {tmp_path / 'results'}\nexecutor: {{kind: ray}}\ntracking: {{kind: none}}\n"
                    "suites:\n  c:\n    tasks: [coco]\n    models: [constant, nearest-neighbour]\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "COCO_ROOT"}
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--suite", "c", "--config", str(path)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("COCO_ROOT") >= 1 and proc.stderr.count("error:") == 1
    assert "Traceback" not in proc.stderr and "ray" not in proc.stdout.lower()
    assert not (tmp_path / "results" / "c").exists() or not any((tmp_path / "results" / "c").iterdir())


def test_cli_run_rejects_a_misspelt_knob_before_training(write_config):
    path = write_config(SUITE.format(model="{name: vit-gpt2-tiny, decoding: {nm_beams: 3}}"))
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--suite", "mini", "--config", str(path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "nm_beams" in proc.stderr and "Traceback" not in proc.stderr
    results = path.parent / "results" / "mini"
    assert not any(results.glob("*/train_state")) and not any(results.glob("*/job.json"))


@pytest.mark.parametrize("name", ["ladic-tiny", "blip-tiny", "git-tiny", "vit-gpt2-tiny"])
def test_caption_and_decode_cost_refuse_unknown_knobs(name, tiny_shapes):
    from bench.registry import create_captioner

    torch.manual_seed(0)
    model = create_captioner(name)
    model.prepare(tiny_shapes.samples("train")[:4])
    pixels = torch.stack([model.preprocess(s.load_image()) for s in tiny_shapes.samples("test")[:1]])
    with pytest.raises(TypeError, match="nm_beams"):
        model.caption(pixels, nm_beams=3)
    with pytest.raises(TypeError, match="nm_beams"):
        model.decode_cost(nm_beams=3)
    knobs = {k.name: k.default for k in type(model).knobs if k.default is not None}
    assert model.decode_cost(**knobs) >= 0  # every declared knob is accepted
