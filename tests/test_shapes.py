import hashlib
import json
import random
import statistics

from tasks.karpathy import read_karpathy_json
from tasks.shapes import ShapesTask, captions_for, random_scene


def _digest(root):
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(root).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_generation_is_deterministic_and_seeded(tmp_path):
    a = ShapesTask(seed=3, train=12, val=2, test=3, root=tmp_path / "a")
    b = ShapesTask(seed=3, train=12, val=2, test=3, root=tmp_path / "b")
    c = ShapesTask(seed=4, train=12, val=2, test=3, root=tmp_path / "c")
    for task in (a, b, c):
        task.ensure_files()
    assert _digest(a.root) == _digest(b.root)
    assert _digest(a.root) != _digest(c.root)


def test_karpathy_format_and_splits(tiny_shapes):
    data = read_karpathy_json(tiny_shapes.split_file)
    entry = data["images"][0]
    assert {"filepath", "filename", "imgid", "split", "sentences"} <= set(entry)
    assert {"raw", "tokens", "imgid", "sentid"} <= set(entry["sentences"][0])
    assert [len(tiny_shapes.samples(s)) for s in ("train", "val", "test")] == [40, 6, 12]
    sample = tiny_shapes.samples("test")[0]
    assert sample.load_image().size == (64, 64)
    assert len(sample.references) == 5 and len(set(sample.references)) == 5
    ids = [s.image_id for split in ("train", "val", "test") for s in tiny_shapes.samples(split)]
    assert len(ids) == len(set(ids))


def test_caption_lengths_spread_over_5_to_20_words(tmp_path):
    task = ShapesTask(seed=0, train=300, val=1, test=1, root=tmp_path)
    lengths = [len(r.split()) for s in task.samples("train") for r in s.references]
    assert min(lengths) >= 5
    assert statistics.quantiles(lengths, n=20)[-1] <= 22  # 95th percentile
    assert max(lengths) >= 18
    assert len(set(lengths)) >= 12  # a spread, not a few fixed lengths


def test_more_shapes_make_longer_captions():
    rng = random.Random(0)
    by_count: dict[int, list[int]] = {}
    for _ in range(300):
        shapes = random_scene(rng)
        by_count.setdefault(len(shapes), []).extend(len(c.split()) for c in captions_for(shapes, rng))
    means = [statistics.mean(by_count[k]) for k in sorted(by_count)]
    assert sorted(by_count) == [1, 2, 3]
    assert means == sorted(means) and means[-1] - means[0] > 4


def test_generation_survives_an_existing_target(tmp_path):
    task = ShapesTask(seed=0, train=3, val=1, test=1, root=tmp_path)
    task.ensure_files()
    before = json.loads(task.split_file.read_text())
    ShapesTask(seed=0, train=3, val=1, test=1, root=tmp_path).ensure_files()
    assert json.loads(task.split_file.read_text()) == before
