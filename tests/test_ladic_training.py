"""LaDiC learns (a tiny model overfits a handful of captions), and the latency comparison runs."""

from __future__ import annotations

import re

import pytest
import torch

from bench.api import Sample
from models.ladic.benchmark import compare_latency, format_table
from models.ladic.captioner import LaDiCCaptioner
from tasks.shapes import ShapesTask


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def words(caption: str) -> list[str]:
    return re.findall(r"\w+", caption.lower())


@pytest.mark.slow
def test_tiny_ladic_overfits_a_handful_of_captions(tmp_path):
    torch.manual_seed(0)
    task = ShapesTask(seed=0, train=8, val=1, test=1, root=tmp_path)
    samples = task.samples("train")[:4]
    captions = [min(s.references, key=len) for s in samples]  # one caption per image
    # d = 1 in training: the sampler's own dilation, so a memorised caption is denoised exactly.
    model = LaDiCCaptioner(LaDiCCaptioner.variant_config("ladic-tiny", train_dilation=1.0))
    model.prepare([Sample(s.image_id, s.image_path, (c,)) for s, c in zip(samples, captions, strict=True)])
    pixels = torch.stack([model.preprocess(s.load_image()) for s in samples])
    batch = model.collate(list(pixels) * 8, captions * 8)  # copies average out the random t per step
    params = [p for p in model.module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=3e-3)
    recalled = 0
    for step in range(1, 601):
        model.module.train()
        loss = model.training_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0:
            out = model.caption(pixels)
            recalled = sum(words(o) == words(c) for o, c in zip(out, captions, strict=True))
            if recalled == len(captions):
                break
    assert recalled == len(captions), (out, captions)


def test_latency_comparison_rows_and_table():
    rows = compare_latency("ladic-tiny", steps=[1, 5], device="cpu", batch_size=2, n_images=2, warmup=0)
    assert [(r["steps"], r["mode"]) for r in rows] == [
        (1, "optimized"), (1, "reference"), (5, "optimized"), (5, "reference")]
    assert all(r["identical"] for r in rows)
    assert rows[0]["evaluations"] == 2 and rows[2]["evaluations"] == 16  # guidance x2; refine +3 steps
    assert all(r["seconds_per_image"] > 0 and r["speedup"] > 0 for r in rows)
    table = format_table(rows)
    assert "speed-up" in table and len(table.splitlines()) == 5
