"""CHAIR (bench/metrics/chair.py) on hand-made COCO instance annotations whose answer is known."""

from __future__ import annotations

import json

import pytest

from bench.metrics.chair import chair_scores, load_instances, object_words, objects_in


def _instances(path, images: dict[int, list[int]]):
    categories = [{"id": 1, "name": "person", "supercategory": "person"},
                  {"id": 18, "name": "dog", "supercategory": "animal"},
                  {"id": 17, "name": "cat", "supercategory": "animal"},
                  {"id": 59, "name": "pizza", "supercategory": "food"}]
    anns = [{"id": n, "image_id": i, "category_id": c, "bbox": [0, 0, 1, 1], "area": 1.0, "iscrowd": 0}
            for n, (i, c) in enumerate((i, c) for i, cs in images.items() for c in cs)]
    path.write_text(json.dumps({"info": {}, "licenses": [], "categories": categories, "annotations": anns,
                                "images": [{"id": i, "file_name": f"COCO_val2014_{i:012d}.jpg", "width": 8,
                                            "height": 8} for i in images]}))
    return path


def test_table_covers_the_80_categories_with_plurals_and_phrases():
    table = object_words()
    assert len(set(table.values())) == 80
    assert objects_in("Two men and three women eat hot dogs near a teddy bear") == {"person", "hot dog", "teddy bear"}
    assert objects_in("knives, benches and buses") == {"knife", "bench", "bus"}
    assert objects_in("an empty street at night") == set()


def test_chair_on_a_hand_made_example(tmp_path):
    instances = load_instances([_instances(tmp_path / "instances_val2014.json", {1: [1, 18], 2: [59], 3: [17]})])
    assert instances == {"1": {"person", "dog"}, "2": {"pizza"}, "3": {"cat"}}
    references = {"1": ["a man walks his dog"], "2": ["a pizza on a plate"], "3": ["a cat asleep on a couch"]}
    captions = {"1": "a man and a dog with a frisbee",  # frisbee hallucinated; 2 of 2 truths said
                "2": "a pizza next to a knife and a fork",  # knife, fork hallucinated; 1 of 1
                "3": "a kitten on a sofa"}  # couch is in the references: not hallucinated; 2 of 2
    corpus, per_image = chair_scores(captions, references, instances)
    assert corpus["CHAIR-i"] == pytest.approx(3 / 8)
    assert corpus["CHAIR-s"] == pytest.approx(2 / 3)
    assert corpus["CHAIR-recall"] == pytest.approx(5 / 5)
    assert [per_image[i]["CHAIR-s"] for i in "123"] == [1.0, 1.0, 0.0]
    for metric, value in corpus.items():  # the per-image values' mean is the corpus score (bootstrap input)
        assert sum(p[metric] for p in per_image.values()) / 3 == pytest.approx(value)
    # linearised CHAIR-i: R + (h - R m) / mean(m) with R = 3/8, mean(m) = 8/3
    assert per_image["3"]["CHAIR-i"] == pytest.approx(3 / 8 + (0 - 3 / 8 * 2) / (8 / 3))


def test_images_outside_the_annotations_and_bad_files_are_clear_errors(tmp_path):
    instances = load_instances([_instances(tmp_path / "i.json", {1: [1]})])
    with pytest.raises(ValueError, match=r"1 captioned image\(s\) are not in the instance annotations"):
        chair_scores({"1": "a man", "9": "a dog"}, {}, instances)
    bad = tmp_path / "captions_val2014.json"
    bad.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(ValueError, match="captions_val2014.json: not COCO instance annotations"):
        load_instances([bad])


def test_chair_through_extra_scores_gets_bootstrap_intervals(tmp_path):
    from bench.metrics.extra import extra_scores
    from bench.metrics.stats import bootstrap_ci

    path = _instances(tmp_path / "instances_val2014.json", {1: [1], 2: [18], 3: [59], 4: [17]})
    captions = {"1": "a man", "2": "a dog and a cat", "3": "a pizza", "4": "a cat on a bed"}
    out = extra_scores(None, "test", captions, {i: ["x"] for i in captions}, {"instances": [str(path)]})
    assert out.corpus["CHAIR-s"] == pytest.approx(2 / 4) and out.corpus["CHAIR-i"] == pytest.approx(2 / 6)
    tokens = {i: ["x"] for i in captions}
    ci = bootstrap_ci(tokens, tokens, metrics=("CHAIR-i", "CHAIR-s"), per_image=out.per_image,
                      corpus=out.corpus, n_resamples=200)
    for metric in ("CHAIR-i", "CHAIR-s"):
        assert ci[metric].low <= out.corpus[metric] <= ci[metric].high
        assert ci[metric].point == pytest.approx(out.corpus[metric])
    missing = extra_scores(None, "test", {"9": "a dog"}, {"9": ["x"]}, {"instances": [str(path)]})
    assert "not in the instance annotations" in missing.unavailable["CHAIR-i"]
