"""Scoring equals pycocoevalcap's own COCOEvalCap pipeline on a generated set."""

import json

import pytest

from bench.metrics.quality import score_captions, spice_missing_reason

pytestmark = pytest.mark.java


def _caption_set(task):
    # Captions of varied quality: a reference of another image, a truncated own reference, an exact one.
    samples = task.samples("test")
    captions = {}
    for i, s in enumerate(samples):
        if i % 3 == 0:
            captions[s.image_id] = samples[(i + 1) % len(samples)].references[0]
        elif i % 3 == 1:
            captions[s.image_id] = " ".join(s.references[1].split()[:4])
        else:
            captions[s.image_id] = s.references[2].upper() + " ."
    return captions


def test_scores_equal_cocoevalcap_pipeline(tiny_shapes, tmp_path, monkeypatch):
    from pycocoevalcap import eval as coco_eval
    from pycocotools.coco import COCO

    captions = _caption_set(tiny_shapes)
    refs = tiny_shapes.references("test")
    ids = {image_id: n for n, image_id in enumerate(sorted(captions))}
    annotations = {
        "info": {}, "licenses": [], "type": "captions",
        "images": [{"id": ids[i]} for i in ids],
        "annotations": [{"image_id": ids[i], "id": 1000 * ids[i] + k, "caption": c}
                        for i in ids for k, c in enumerate(refs[i])],
    }
    (tmp_path / "ann.json").write_text(json.dumps(annotations))
    (tmp_path / "res.json").write_text(json.dumps([{"image_id": ids[i], "caption": c} for i, c in captions.items()]))
    coco = COCO(str(tmp_path / "ann.json"))
    result = coco.loadRes(str(tmp_path / "res.json"))

    class NoSpice:  # SPICE needs CoreNLP jars that are not installed offline
        def compute_score(self, gts, res):
            return 0.0, [{"All": {"f": 0.0}}] * len(res)

        def method(self):
            return "SPICE"

    monkeypatch.setattr(coco_eval, "Spice", NoSpice)
    evaluator = coco_eval.COCOEvalCap(coco, result)
    evaluator.evaluate()

    ours = score_captions(captions, refs, metrics=("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR",
                                                   "ROUGE-L", "CIDEr"))
    names = {"Bleu_1": "BLEU-1", "Bleu_2": "BLEU-2", "Bleu_3": "BLEU-3", "Bleu_4": "BLEU-4",
             "METEOR": "METEOR", "ROUGE_L": "ROUGE-L", "CIDEr": "CIDEr"}
    for theirs, mine in names.items():
        assert ours.corpus[mine] == pytest.approx(evaluator.eval[theirs], abs=1e-9), mine
        for image_id, n in ids.items():
            assert ours.per_image[image_id][mine] == pytest.approx(evaluator.imgToEval[n][theirs], abs=1e-9)
    assert 0 < ours.corpus["CIDEr"] < 10


def test_spice_unavailable_is_recorded_with_a_remedy(tiny_shapes):
    if spice_missing_reason() is None:
        pytest.skip("SPICE's CoreNLP jars are installed here")
    refs = tiny_shapes.references("test")
    captions = {i: r[0] for i, r in list(refs.items())[:3]}
    scores = score_captions(captions, refs, metrics=("BLEU-4", "SPICE"))
    assert "SPICE" not in scores.corpus
    assert "stanford-corenlp-3.6.0" in scores.unavailable["SPICE"]
    assert scores.corpus["BLEU-4"] == pytest.approx(1.0)  # exact references score 1
    assert set(scores.per_image) == set(captions)


def test_bad_inputs_are_named(tiny_shapes):
    with pytest.raises(ValueError, match="unknown metric"):
        score_captions({"a": "x"}, {"a": ["x"]}, metrics=("BLEU-5",))
    with pytest.raises(ValueError, match="no references"):
        score_captions({"a": "x"}, {"b": ["x"]})
