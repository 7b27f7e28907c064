"""The on-disk feature cache: hits, misses, invalidation by encoder / weights / transform, robustness."""

from __future__ import annotations

import torch

from bench.feature_cache import FeatureCache, fingerprint_module

TRANSFORM = {"size": 224, "resample": "bicubic", "mean": [0.5] * 3, "std": [0.5] * 3}


def test_put_get_and_batch_helper(tmp_path):
    cache = FeatureCache("blip-vit-base", TRANSFORM, root=tmp_path)
    assert cache.get("391895") is None and len(cache) == 0
    value = torch.randn(5, 8)
    cache.put("391895", value)
    assert "391895" in cache and len(cache) == 1
    got = cache.get("391895")
    assert got.dtype == torch.float16 and torch.allclose(got.float(), value, atol=1e-2)

    calls = []

    def compute(indices):
        calls.append(list(indices))
        return torch.ones(len(indices), 5, 8)

    ids = ["391895", "a/b c", "42"]  # ids may hold any character
    out = cache.get_or_compute(ids, compute)
    assert calls == [[1, 2]] and [tuple(t.shape) for t in out] == [(5, 8)] * 3
    cache.get_or_compute(ids, compute)
    assert calls == [[1, 2]]  # all hits now
    assert cache.path("42").stat().st_size < 2_000  # a row of a batch is stored alone, not the batch


def test_a_change_of_encoder_weights_or_transform_invalidates(tmp_path):
    def cache(encoder="blip-vit-base", transform=TRANSFORM, weights="w1"):
        return FeatureCache(encoder, transform, encoder_hash=weights, root=tmp_path)

    base = cache()
    base.put("1", torch.zeros(3))
    assert cache(transform=dict(TRANSFORM)).get("1") is not None  # an equal description is the same key
    for other in (cache(encoder="blip-vit-large"), cache(weights="w2"),
                  cache(transform={**TRANSFORM, "size": 384})):
        assert other.dir != base.dir and other.get("1") is None
    stale = cache(transform={**TRANSFORM, "size": 384})
    stale.put("1", torch.zeros(3))
    cache(encoder="other-encoder").put("1", torch.zeros(3))
    assert cache().prune() == [stale.dir]  # other encoders' namespaces are kept
    assert base.get("1") is not None and not stale.dir.exists()
    base.clear()
    assert base.get("1") is None


def test_fingerprint_follows_weights():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    assert fingerprint_module(a) != fingerprint_module(b)
    b.load_state_dict(a.state_dict())
    assert fingerprint_module(a) == fingerprint_module(b)
    assert fingerprint_module(a.to(torch.bfloat16)) != fingerprint_module(b)


def test_a_damaged_entry_is_a_miss_and_keep_dtype_option(tmp_path):
    cache = FeatureCache("enc", "resize 32", root=tmp_path, dtype=None)
    cache.put("7", torch.arange(4, dtype=torch.float64))
    assert cache.get("7").dtype == torch.float64
    cache.path("7").write_bytes(b"half a file")
    assert cache.get("7") is None and "7" not in cache
    assert (cache.dir / "key.json").is_file()
