"""CLIPScore / RefCLIPScore (bench/metrics/clipscore.py) with a tiny random CLIP built from a config."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A random CLIP (tiny text and vision towers) with a character-level BPE tokenizer, saved to a folder."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    folder = tmp_path_factory.mktemp("tiny-clip")
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in letters:
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 77, "bos_token_id": 0, "eos_token_id": 1,
                     "pad_token_id": 1},
        vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 37,
                       "num_hidden_layers": 1, "num_attention_heads": 2},
        projection_dim=16)
    CLIPModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("img")
    out = {}
    for n, colour in enumerate(("red", "blue", "green")):
        Image.new("RGB", (40, 30), colour).save(folder / f"{n}.png")
        out[str(n)] = folder / f"{n}.png"
    return out


def test_clipscore_follows_hessel_et_al(tiny_clip, images):
    from bench.metrics.clipscore import PREFIX, W, clip_scores, load_clip

    model, processor = load_clip(str(tiny_clip))
    captions = {"0": "a red square", "1": "a blue field", "2": "green"}
    references = {"0": ["a red square"], "1": ["a dog", "a cat"], "2": ["grass"]}
    corpus, per_image = clip_scores(model, processor, images, captions, references, batch=2)
    from PIL import Image

    for i, caption in captions.items():
        text = {k: v.to(model.device) for k, v in processor(text=[PREFIX + caption], return_tensors="pt",
                                                            padding=True).items()}
        pixels = processor(images=[Image.open(images[i]).convert("RGB")], return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            t = model.get_text_features(**text)
            v = model.get_image_features(pixel_values=pixels.to(model.device))
        t, v = (x if hasattr(x, "shape") else x.pooler_output for x in (t, v))
        expected = W * max(float(torch.cosine_similarity(t, v)[0]), 0.0)
        assert per_image[i]["CLIPScore"] == pytest.approx(expected, abs=1e-5)
    c = per_image["0"]["CLIPScore"]  # its reference is the caption itself: text-text cosine 1
    assert per_image["0"]["RefCLIPScore"] == pytest.approx(2 * c * 1.0 / (c + 1.0), abs=1e-5)
    assert corpus["CLIPScore"] == pytest.approx(sum(p["CLIPScore"] for p in per_image.values()) / 3)


def test_offline_without_weights_is_unavailable_with_the_remedy(monkeypatch, images):
    from bench.metrics.extra import extra_scores

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("BENCH_WEIGHTS_DIR", raising=False)

    class Task:
        def samples(self, split):
            return []

    out = extra_scores(Task(), "test", {"0": "a red square"}, {"0": ["x"]}, {"clip": "no-such-org/clip-absent"})
    assert set(out.unavailable) == {"CLIPScore", "RefCLIPScore"} and not out.corpus
    assert "CLIPScore needs CLIP weights" in out.unavailable["CLIPScore"]
    assert "hf download no-such-org/clip-absent" in out.unavailable["CLIPScore"]


def test_images_absent_make_clipscore_unavailable(tiny_clip):
    from bench.metrics.extra import extra_scores

    class Task:
        def samples(self, split):
            return []

    out = extra_scores(Task(), "test", {"0": "a"}, {"0": ["b"]}, {"clip": str(tiny_clip)})
    assert "no readable image file" in out.unavailable["CLIPScore"]


@pytest.mark.java
@pytest.mark.slow
def test_a_suite_job_records_clipscore_per_image_with_intervals(tiny_clip, write_config, monkeypatch):
    import bench.metrics.quality as quality
    from bench.config import load_config
    from bench.results import read_json
    from bench.suite import run_suite

    scorers = quality._scorers  # METEOR's JVM start-up is beside the point here
    monkeypatch.setattr(quality, "_scorers", lambda metrics: scorers(tuple(m for m in metrics if m != "METEOR")))
    cfg = load_config(write_config(f"""
        tracking: {{kind: none}}
        executor: {{kind: local}}
        suites:
          clip:
            tasks: [shapes]
            phases: [eval]
            eval: {{batch_size: 12, bootstrap: 50, clip: {tiny_clip}}}
            models: [constant]
        """))
    (result,) = run_suite(cfg, "clip", echo=lambda _: None)
    scores = read_json(cfg.results_dir / "clip" / result["job_id"] / "scores.json")
    assert {"CLIPScore", "RefCLIPScore"} <= set(scores["corpus"]) and not scores.get("unavailable", {}).get("CLIPScore")
    assert all("CLIPScore" in p for p in scores["per_image"].values()) and len(scores["per_image"]) == 12
    iv = scores["intervals"]["CLIPScore"]
    assert iv["low"] <= scores["corpus"]["CLIPScore"] <= iv["high"]
