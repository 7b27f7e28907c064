"""The vlm suite's configuration and its verdict restricted to named models (`verdict_models`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def test_the_vlm_suite_is_zero_shot_and_judges_the_same_family_pair():
    from bench.registry import captioners

    suite = load_config(ROOT / "bench.yaml").suite("vlm")
    assert "train" not in suite.phases and set(suite.tasks) == {"coco", "flickr30k"}
    labels = {spec.display: spec.name for spec in suite.models}
    pair = [labels[label] for label in suite.verdict_models]
    assert pair == ["vlm-diffusiongemma-26b-a4b", "vlm-gemma4-26b-a4b"]
    assert [captioners.entry(n).paradigm for n in pair] == ["diffusion (block)", "autoregressive"]


@pytest.mark.parametrize("models, message", [
    ('["Gemma 4 (test)", "nope"]', r"verdict_models: \['nope'\] are not labels of this suite's models"),
    ('["Gemma 4 (test)"]', "compares at least two models"),
])
def test_verdict_models_must_name_two_of_the_suites_models(write_config, models, message):
    from bench.config import ConfigError

    body = f"""
    suites:
      s:
        tasks: [shapes]
        verdict_models: {models}
        models:
          - {{name: vlm-gemma4-test, label: "Gemma 4 (test)"}}
          - vlm-diffusiongemma-test
    """
    with pytest.raises((ConfigError, ValueError), match=message):
        load_config(write_config(body))


def test_the_verdict_leaves_out_models_not_named(tmp_path):
    from bench.report import build_report
    from tests.test_report import TASK, make_suite

    suite, results = make_suite(tmp_path)
    both = build_report(suite, results, formats=["csv"], figures=False, commit="x",
                        verdict_models=["ladic-mini", "vit-gpt2-mini"], out_dir=tmp_path / "both")
    assert f"{TASK}-verdict.csv" in {p.name for p in both}
    # Only one paradigm of learned models named: no verdict, and every model still in the main table.
    one = build_report(suite, results, formats=["csv"], figures=False, commit="x",
                       verdict_models=["ladic-mini", "nearest-neighbour"], out_dir=tmp_path / "one")
    assert f"{TASK}-verdict.csv" not in {p.name for p in one}
    main = (tmp_path / "one" / f"{TASK}-main.csv").read_text()
    assert "ladic-mini" in main and "vit-gpt2-mini" in main


@pytest.mark.parametrize("field, value, accepted", [("postprocess", "all", "first_sentence, none"),
                                                     ("dtype", "int8", "float32, bfloat16, float16")])
def test_bad_vlm_settings_are_refused_naming_what_is_accepted(field, value, accepted):
    from models.vlm.autoregressive import VlmAutoregressiveCaptioner

    with pytest.raises(ValueError, match=f"{field}: '{value}' is not accepted; accepted: {accepted}"):
        VlmAutoregressiveCaptioner.variant_config("vlm-gemma4-test", **{field: value})


def test_a_tiny_configuration_that_does_not_exist_is_named():
    from models.vlm.tiny import build_tiny

    with pytest.raises(ValueError, match="'florence2' has no tiny configuration; accepted: gemma4, diffusion_gemma"):
        build_tiny("florence2")
