"""CLIPScore and RefCLIPScore (Hessel et al. 2021, "CLIPScore: A Reference-free Evaluation Metric for
Image Captioning", EMNLP), per image.

    CLIPScore(c, v)       = w * max(cos(E_text(c), E_image(v)), 0),  w = 2.5
    RefCLIPScore(c, R, v) = harmonic mean of CLIPScore(c, v) and max(max_r cos(E_text(c), E_text(r)), 0)

As the authors' code does, every text (candidate and reference) is prefixed "A photo depicts " and
truncated to CLIP's 77 tokens; embeddings are L2-normalised. The corpus score is the mean over images,
so the bootstrap resamples per-image values like any mean metric.

The embeddings come from transformers' `CLIPModel` (`get_image_features`, `get_text_features`) and its
processor, loaded by hub id or local save_pretrained directory (models/weights.py: $BENCH_WEIGHTS_DIR,
the Hugging Face cache, then the hub). torchmetrics' `CLIPScore` calls the same model, but reports only a
batch mean of 100 * max(cos, 0), has no reference variant, and would add a dependency; the per-image
values and RefCLIPScore are what the paired tests need, so the two formulas are written here (a few
lines) over the maintained model code. Without the weights (offline, no local copy) the caller records
both metrics as unavailable with the message of `ClipUnavailable`, which says how to get them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

W = 2.5
PREFIX = "A photo depicts "
DEFAULT_MODEL = "openai/clip-vit-base-patch32"  # the model of Hessel et al. (ViT-B/32)


class ClipUnavailable(RuntimeError):
    """The CLIP weights cannot be loaded here; the message says how to provide them."""


def load_clip(source: str):
    """(model, processor) from a hub id or a local directory; ClipUnavailable with the remedy if absent."""
    from transformers import AutoProcessor, CLIPModel

    from models.weights import WeightsNotFound, load_pretrained

    try:
        model = load_pretrained(CLIPModel.from_pretrained, source, offline_variant="(none: CLIPScore is skipped)")
        processor = load_pretrained(AutoProcessor.from_pretrained, source, offline_variant="(none)")
    except WeightsNotFound as err:
        raise ClipUnavailable(f"CLIPScore needs CLIP weights: {err}") from None
    import torch

    return model.to("cuda" if torch.cuda.is_available() else "cpu").eval(), processor


def _texts(model, processor, texts: Sequence[str], batch: int):
    import torch

    out = []
    for n in range(0, len(texts), batch):
        enc = processor(text=[PREFIX + t for t in texts[n:n + batch]], padding=True, truncation=True,
                        max_length=77, return_tensors="pt")
        device = next(model.parameters()).device
        with torch.no_grad():
            out.append(_features(model.get_text_features(input_ids=enc["input_ids"].to(device),
                                                         attention_mask=enc["attention_mask"].to(device))))
    return torch.nn.functional.normalize(torch.cat(out).float(), dim=-1).cpu()


def _images(model, processor, paths: Sequence[Path], batch: int):
    import torch
    from PIL import Image

    out = []
    for n in range(0, len(paths), batch):
        images = []
        for p in paths[n:n + batch]:
            with Image.open(p) as im:
                images.append(im.convert("RGB"))
        pixels = processor(images=images, return_tensors="pt")["pixel_values"].to(next(model.parameters()).device)
        with torch.no_grad():
            out.append(_features(model.get_image_features(pixel_values=pixels)))
    return torch.nn.functional.normalize(torch.cat(out).float(), dim=-1).cpu()


def _features(output):
    """A features tensor (transformers 5 may return an output object holding `pooler_output`)."""
    return output if hasattr(output, "shape") else output.pooler_output


def clip_scores(model, processor, images: Mapping[str, Path], captions: Mapping[str, str],
                references: Mapping[str, list[str]], batch: int = 32
                ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(corpus means, per-image {CLIPScore, RefCLIPScore}) of `captions` (image id -> caption)."""
    ids = sorted(captions)
    lacking = [i for i in ids if i not in images]
    if lacking:
        raise ValueError(f"{len(lacking)} captioned image(s) have no readable image file, e.g. {lacking[:3]}")
    cand = _texts(model, processor, [captions[i] for i in ids], batch)
    vis = _images(model, processor, [images[i] for i in ids], batch)
    flat = [r for i in ids for r in references.get(i, [])]
    refs = _texts(model, processor, flat, batch) if flat else None
    per_image: dict[str, dict[str, float]] = {}
    start = 0
    for n, i in enumerate(ids):
        clip = W * max(float(cand[n] @ vis[n]), 0.0)
        count = len(references.get(i, []))
        ref = max(float((refs[start:start + count] @ cand[n]).max()), 0.0) if count else 0.0
        start += count
        harmonic = 2 * clip * ref / (clip + ref) if clip + ref > 0 else 0.0
        per_image[i] = {"CLIPScore": clip, "RefCLIPScore": harmonic}
    corpus = {m: sum(p[m] for p in per_image.values()) / len(ids) for m in ("CLIPScore", "RefCLIPScore")}
    return corpus, per_image
