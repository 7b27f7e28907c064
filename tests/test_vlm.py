"""Released VLM captioners (models/vlm/) on tiny random-weight configs of the real classes, offline.

Every phase of the vlm suite runs on the CPU through the captioner code a released checkpoint uses
(processor, chat template, image path, generate, probes); the tiny models are saved as save_pretrained
directories and loaded back as `weights`, as a checkpoint under $BENCH_WEIGHTS_DIR would be.
"""

from __future__ import annotations

import json

import pytest
import torch

from bench.registry import create_captioner
from models.vlm.base import first_sentence


def images(tiny_shapes, n=2):
    return [s.load_image() for s in tiny_shapes.samples("test")[:n]]


@pytest.mark.parametrize("text, expected", [
    ("A dog on a sofa. It sleeps.", "A dog on a sofa."),
    ("**A red car parked on a street**\n\nThe car is red.", "A red car parked on a street"),
    ("  \n\"Two cats!\" say  the  owners", "Two cats!"),
    ("no end mark here", "no end mark here"),
    ("", ""),
])
def test_first_sentence_keeps_the_first_line_and_sentence(text, expected):
    assert first_sentence(text) == expected


def test_prompt_is_the_chat_template_with_image_and_instruction():
    model = create_captioner("vlm-gemma4-test")
    assert model.prompt_text() == "<bos><start_of_turn>user\n<|image|>A short caption:<end_of_turn>\n<start_of_turn>model\n"
    x = torch.stack([model.preprocess(im) for im in [__import__("PIL.Image").Image.new("RGB", (50, 30))]])
    enc = model.model_inputs(x)
    ids = enc["input_ids"][0].tolist()
    tok = model.tokenizer
    # boi, the image's soft tokens (one per pooled patch), eoi: Gemma 4's expansion of the image token
    n = ids.count(tok.image_token_id)
    assert n > 0 and ids[ids.index(tok.image_token_id) - 1] == tok.convert_tokens_to_ids("<|image>")
    assert ids[ids.index(tok.image_token_id) + n] == tok.convert_tokens_to_ids("<image|>")


def test_autoregressive_vlm_counts_passes_and_tokens(tiny_shapes):
    model = create_captioner("vlm-gemma4-test")
    x = torch.stack([model.preprocess(im) for im in images(tiny_shapes)])
    out = model.generate(x, max_new_tokens=5)
    # no end token among the tiny vocabulary's greedy picks: 5 tokens, 5 forward passes (prefill + 4)
    assert out.tokens == [5, 5] and out.network_evals == [5, 5]
    assert model.caption_raw(x, max_new_tokens=5) == [" ".join(c.split()) for c in model.decode(
        model.generate_ids(x, max_new_tokens=5))]
    forced = model.continue_from(x, [["a", "red"], []], max_new_tokens=5)
    assert forced[0].startswith("a red") and forced[1] == model.caption(x[1:], max_new_tokens=5)[0]
    hits = model.teacher_forced_words(x, ["a red circle", "two dogs"])
    assert [len(h) for h in hits] == [3, 2]


def test_diffusion_gemma_counts_its_own_denoising_steps(tiny_shapes):
    model = create_captioner("vlm-diffusiongemma-test")
    assert model.paradigm == "diffusion (block)"
    x = torch.stack([model.preprocess(im) for im in images(tiny_shapes)])
    fixed = model.generate(x, max_denoising_steps=3, adaptive_stopping=False)
    assert fixed.network_evals == [3 + 1, 3 + 1]  # 3 decoder passes + the prompt's encoder pass
    assert fixed.tokens == [16, 16]  # no end token on a random canvas: the whole canvas
    # stopping criteria met at once (stability 0, any entropy under 1e3): one step per caption
    early = model.generate(x, max_denoising_steps=3, stability_threshold=0, confidence_threshold=1e3)
    assert early.network_evals == [2, 2]
    half = model.generate(x, max_denoising_steps=3, adaptive_stopping=False, canvas_length=8)
    assert half.tokens == [8, 8] and model.module.config.canvas_length == 16  # restored
    assert model.decode_cost(max_denoising_steps=3) == 4


def test_diffusion_gemma_sampling_is_seeded_and_temperature_matters(tiny_shapes):
    model = create_captioner("vlm-diffusiongemma-test")
    x = torch.stack([model.preprocess(im) for im in images(tiny_shapes, 1)])
    a = model.sample_captions(x, 2, "seeds", seed=3, max_denoising_steps=2)
    assert a == model.sample_captions(x, 2, "seeds", seed=3, max_denoising_steps=2)
    assert len(a) == 1 and len(a[0]) == 2 and a[0][0] != a[0][1]
    assert a != model.sample_captions(x, 2, "seeds", seed=3, temperature=0.05, max_denoising_steps=2)
    with pytest.raises(ValueError, match="accepted: 'seeds'|accepted: seeds"):
        model.sample_captions(x, 2, "nucleus")


def test_saved_tiny_model_loads_as_weights_and_offline_hub_ids_say_what_to_do(tmp_path, tiny_shapes, monkeypatch):
    from models.weights import WeightsNotFound, weights_identity

    model = create_captioner("vlm-diffusiongemma-test")
    model.save(tmp_path / "google--diffusiongemma-26B-A4B-it")
    monkeypatch.setenv("BENCH_WEIGHTS_DIR", str(tmp_path))
    x = torch.stack([model.preprocess(im) for im in images(tiny_shapes, 1)])
    again = create_captioner("vlm-diffusiongemma-26b-a4b", dtype="float32", image_size=32)
    assert again.module.config.canvas_length == 16
    torch.manual_seed(0)
    first = model.caption(x, max_denoising_steps=2)
    torch.manual_seed(0)
    assert again.caption(x, max_denoising_steps=2) == first
    assert weights_identity("google/diffusiongemma-26B-A4B-it").startswith("dir:")
    from bench.plan import pretrained_weights  # the fingerprint is part of the job's identity, as BLIP's

    assert pretrained_weights("vlm-diffusiongemma-26b-a4b", {})["model"]["identity"].startswith("dir:")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFound, match="vlm-gemma4-test"):
        create_captioner("vlm-gemma4-26b-a4b")


SUITE = """
executor: {kind: local}
tracking: {kind: none}
suites:
  vlm-mini:
    tasks: [shapes]
    phases: [eval, latency, errprop, diversity]
    eval: {batch_size: 6, bootstrap: 0}
    latency: {images: 1, warmup: 0, repeats: 1, batch_sizes: [1], sweep: {max_denoising_steps: [1, 2]},
              lengths: [2]}
    errprop: {images: 2, positions: 1, wrong_words: 1, n_resamples: 10}
    diversity: {images: 2, k: 2, batch_size: 2}
    verdict_models: ["DiffusionGemma (test)", "Gemma 4 (test)"]
    models:
      - {name: vlm-diffusiongemma-test, label: "DiffusionGemma (test)", decoding: {max_denoising_steps: 2}}
      - {name: vlm-gemma4-test, label: "Gemma 4 (test)", decoding: {max_new_tokens: 4}}
"""


@pytest.mark.java
@pytest.mark.slow
def test_every_phase_of_the_vlm_suite_runs_on_tiny_configs(write_config):
    from bench.config import load_config
    from bench.suite import run_suite

    cfg = load_config(write_config(SUITE))
    run_suite(cfg, "vlm-mini", echo=lambda _: None)
    results = [json.loads(p.read_text()) for p in (cfg.results_dir / "vlm-mini").glob("*/result.json")]
    assert sorted(r["label"] for r in results) == ["DiffusionGemma (test)", "Gemma 4 (test)"]
    for r in results:
        assert r["status"] == "ok", r.get("error")
        assert "CIDEr" in r["metrics"]
        assert {"eval", "latency", "errprop", "diversity"} <= set(r["phases"])
    # The verdict pairs block diffusion against autoregressive decoding (two paradigm groups).
    verdict = (cfg.results_dir / "vlm-mini" / "report" / "shapes-verdict.md").read_text()
    assert "diffusion (block): DiffusionGemma (test)" in verdict and "autoregressive: Gemma 4 (test)" in verdict


def test_device_check_vlm_runs_the_real_size_code_on_tiny_configs(tmp_path):
    from bench.device_check import main

    code = main(["--vlm", "--tiny", "--device", "cpu", "--out", str(tmp_path), "--steps", "2,3", "--lengths", "2,3",
                 "--batch", "2", "--repeats", "1"])
    assert code == 0
    results = json.loads((tmp_path / "vlm-results.json").read_text())
    dg, g4 = results["models"]
    assert [(r["batch_size"], r["max_denoising_steps"], r["network_passes"]) for r in dg["rows"]] == \
        [(1, 2, 2), (1, 3, 3), (2, 2, 2)]  # adaptive stopping off: exactly the steps asked for
    assert [(r["batch_size"], r["length"], r["network_passes"]) for r in g4["rows"]] == [(1, 2, 2), (1, 3, 3), (2, 2, 2)]
    assert all(r["tokens_per_caption"] == 16 for r in dg["rows"])  # the tiny canvas
    assert "| gemma4 | 1 | length 3 |" in (tmp_path / "vlm-device-check.md").read_text()


def test_device_check_vlm_records_work_past_its_deadline_as_skipped(tmp_path):
    from bench.device_check import main

    assert main(["--vlm", "--tiny", "--device", "cpu", "--out", str(tmp_path), "--deadline", "0"]) == 0
    results = json.loads((tmp_path / "vlm-results.json").read_text())
    assert [m["skipped"] for m in results["models"]] == ["deadline passed before the build"] * 2


@pytest.mark.parametrize("name", ["vlm-qwen2.5-vl-3b", "vlm-paligemma2-3b-mix", "vlm-smolvlm-256m"])
def test_smaller_vlms_run_every_probe_from_tiny_configs_and_reload(name, tiny_shapes, tmp_path):
    """`weights: null` builds the variant's tiny configuration; the saved model reloads through the
    variant's own model and processor classes (the path a checkpoint directory takes)."""
    model = create_captioner(name, weights=None, image_size=32, dtype="float32")
    x = torch.stack([model.preprocess(im) for im in images(tiny_shapes)])
    out = model.generate(x, max_new_tokens=4)
    assert len(out.captions) == 2 and out.network_evals == [4, 4]
    assert model.continue_from(x, [["a", "red"], []], max_new_tokens=4)[0].startswith("a red")
    assert [len(h) for h in model.teacher_forced_words(x, ["a red circle", "two dogs"])] == [3, 2]
    samples = model.sample_captions(x, 2, "nucleus", temperature=0.7, max_new_tokens=4)
    assert [len(s) for s in samples] == [2, 2]
    model.save(tmp_path / "saved")
    again = create_captioner(name, weights=str(tmp_path / "saved"), image_size=32, dtype="float32")
    assert type(again.processor).__name__ == type(model.processor).__name__
    assert again.caption(x, max_new_tokens=4) == out.captions


@pytest.mark.parametrize("build", ["gemma4_26b", "diffusion_gemma_26b"])
def test_published_configs_have_the_published_sizes(build):
    """Built on the meta device (no memory): 25.2B parameters besides the ~550M vision tower, 3.8B of
    them active per token (8 of 128 experts), as the model cards state."""
    import transformers

    from models.vlm import configs

    config = getattr(configs, build)()
    cls = transformers.Gemma4ForConditionalGeneration if build == "gemma4_26b" else \
        transformers.DiffusionGemmaForBlockDiffusion
    with torch.device("meta"):
        module = cls._from_config(config, dtype=torch.bfloat16)
    sizes = {"vision": 0, "experts": 0, "rest": 0}
    for name, p in module.named_parameters():
        sizes["vision" if "vision" in name else "experts" if ".experts." in name else "rest"] += p.numel()
    text = sizes["experts"] + sizes["rest"]
    assert abs(text - 25.2e9) < 0.1e9 and abs(sizes["vision"] - 550e6) < 50e6
    assert abs(sizes["rest"] + sizes["experts"] * 8 / 128 - 3.8e9) < 0.1e9
    assert config.image_token_id == 258880 and config.text_config.layer_types.count("full_attention") == 5


def test_diffusion_gemma_seeded_captions_do_not_depend_on_the_batch(tiny_shapes):
    model = create_captioner("vlm-diffusiongemma-test")
    x = torch.stack([model.preprocess(im) for im in images(tiny_shapes, 3)])
    both = model.caption_raw(x, seed=5, max_denoising_steps=2)
    assert model.caption_raw(x[1:2], seed=5, max_denoising_steps=2) == both[1:2]
    assert model.probe_decoding({"max_denoising_steps": 2}) == {"max_denoising_steps": 2, "seed": 0}


def test_a_pin_at_the_last_step_changes_only_its_positions(tiny_shapes):
    """Pinned at the last denoising step, the final canvas is the uninjected one with the pinned
    positions replaced: the same draws lead there, and the last step's other logits are unchanged."""
    from models.vlm.diffusion_gemma import CanvasPin

    model = create_captioner("vlm-diffusiongemma-test")
    x = torch.stack([model.preprocess(im) for im in images(tiny_shapes, 2)])
    settings = {"seed": 1, "max_denoising_steps": 3, "adaptive_stopping": False}
    base, _ = model._run(x, **settings)
    token = model.tokenizer.convert_tokens_to_ids("dog")
    pins = [CanvasPin(1, {2: token}), CanvasPin(1, {0: token, 5: token})]  # counter 1: the last step
    pinned, _ = model._run(x, pins=pins, **settings)
    assert all(p.applied for p in pins)
    for row, pin in enumerate(pins):
        expected = base[row].clone()
        expected[list(pin.tokens)] = token
        assert pinned[row].tolist() == expected.tolist()
    early = [CanvasPin(3, {2: token}), CanvasPin(3, {2: token})]  # the first step: the rest moves on
    assert model._run(x, pins=early, **settings)[0].shape == base.shape and all(p.applied for p in early)


def test_injection_is_refused_where_the_canvas_stopped_before_its_step(tiny_shapes):
    model = create_captioner("vlm-diffusiongemma-test")
    x = torch.stack([model.preprocess(im) for im in images(tiny_shapes, 1)])
    caption = "a red dog"
    out = model.caption_with_injection(x, [caption], 1, ["blue"], 0.5, max_denoising_steps=4,
                                       adaptive_stopping=False)
    assert len(out) == 1 and isinstance(out[0], str)
    with pytest.raises(ValueError, match="stopped before denoising step 3 of 4"):
        model.caption_with_injection(x, [caption], 1, ["blue"], 0.75, max_denoising_steps=4,
                                     stability_threshold=0, confidence_threshold=1e3)
    with pytest.raises(ValueError, match="has no word 5"):
        model.caption_with_injection(x, [caption], 5, ["blue"], 0.5, max_denoising_steps=4)


def test_a_full_256_token_canvas_is_not_cut_by_a_checkpoints_max_length(tiny_shapes):
    """transformers takes max_length instead of max_new_tokens when the latter is 256 (its default): a
    checkpoint's generation config with a max_length must not shorten DiffusionGemma's one canvas."""
    model = create_captioner("vlm-diffusiongemma-test")
    model.module.generation_config.max_length = 20
    x = torch.stack([model.preprocess(im) for im in images(tiny_shapes, 1)])
    ids, _ = model._run(x, max_denoising_steps=1, canvas_length=256, adaptive_stopping=False)
    assert ids.shape == (1, 256)
