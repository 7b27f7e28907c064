"""bench/caption_files.py: the COCO results format and lmms-eval's sample logs, and every bad file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.caption_files import CaptionFileError, load_caption_file

SPLIT = {"391895", "522418", "184613"}


def _write(path: Path, payload) -> Path:
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return path


def _lmms(image_id, pred: str, version: str = "0.7", prefix: str = "coco") -> dict:
    entry = {"answer": ["a ref"], "pred": pred, "image_id": image_id, "id": 3}
    record = {"doc_id": 0, "target": "a ref", "doc_hash": "ab", "input": "Provide a one-sentence caption."}
    if version == "0.7":
        record |= {"filtered_resps": pred, "token_counts": [], "input_media": []}
    else:  # v0.2.4 - v0.3.5: doc, arguments, nested resps
        record |= {"doc": {"question_id": 1}, "arguments": [], "resps": [[pred]], "filtered_resps": [pred],
                   "prompt_hash": "x", "target_hash": "y"}
    for metric in ("Bleu_4", "METEOR", "CIDEr"):
        record[f"{prefix}_{metric}"] = dict(entry)
    return record


def test_coco_results_with_extra_keys_and_string_ids(tmp_path):
    path = _write(tmp_path / "res.json", [{"image_id": 391895, "caption": "a man on a bike", "id": 1, "score": 0.3},
                                          {"image_id": "522418", "caption": "a woman cutting a cake"}])
    got = load_caption_file(path, SPLIT)
    assert got.format == "coco-results"
    assert got.captions == {"391895": "a man on a bike", "522418": "a woman cutting a cake"}
    assert got.missing == ["184613"]  # counted, not an error
    assert len(got.sha256) == 64


@pytest.mark.parametrize("version", ["0.7", "0.3"])
def test_lmms_eval_jsonl(tmp_path, version):
    lines = [_lmms(391895, "a man riding a bike", version), _lmms(522418, "a cake on a table", version)]
    path = _write(tmp_path / "20250101_120000_samples_coco_karpathy_test.jsonl",
                  "\n".join(json.dumps(x) for x in lines) + "\n")
    got = load_caption_file(path, SPLIT)
    assert got.format == "lmms-eval-jsonl"
    assert got.captions == {"391895": "a man riding a bike", "522418": "a cake on a table"}


def test_lmms_eval_old_json_logs_and_passthrough(tmp_path):
    logs = [{"doc_id": 0, "coco_passthrough": {"pred": "a dog", "image_id": 184613}}]
    path = _write(tmp_path / "coco2014_cap_test.json", {"args": {}, "model_configs": {}, "logs": logs, "time": "x"})
    got = load_caption_file(path, SPLIT)
    assert got.format == "lmms-eval-json" and got.captions == {"184613": "a dog"}


def test_karpathy_imgid_alternate_is_matched_and_said(tmp_path):
    path = _write(tmp_path / "flickr.jsonl", json.dumps(_lmms(7, "two dogs", prefix="flickr")))
    got = load_caption_file(path, {"1000092795"}, {"Karpathy imgid": {"7": "1000092795"}})
    assert got.captions == {"1000092795": "two dogs"} and got.id_kind == "Karpathy imgid"


@pytest.mark.parametrize("payload, message", [
    ({"images": []}, "expected a COCO results list"),
    (["a caption"], "item 0 is not"),
    ([{"image_id": 391895}], "item 0 is not"),
    ('{"doc_id": 0}\nnot json\n', "line 2 is not JSON"),
    ('{"doc_id": 0, "target": "x"}\n{"doc_id": 1}\n', "line 1 has no per-metric entry"),
    ([{"image_id": 391895, "caption": ""}], "is empty"),
    ([{"image_id": 391895, "caption": "   "}], "is empty"),
    ([{"image_id": 391895, "caption": ["a", "b"]}], "is a list, expected a string"),
    ([{"image_id": 391895, "caption": None}], "is a NoneType, expected a string"),
    ([{"image_id": None, "caption": "x"}], "is not an integer"),
    ([], "holds no captions"),
])
def test_bad_files_are_named_errors(tmp_path, payload, message):
    path = _write(tmp_path / "bad.json", payload)
    with pytest.raises(CaptionFileError, match=message) as err:
        load_caption_file(path, SPLIT)
    assert str(path) in str(err.value)


def test_ids_outside_the_split_are_named_first_few(tmp_path):
    path = _write(tmp_path / "res.json", [{"image_id": i, "caption": "x"} for i in (391895, 1, 2, 3, 4, 5, 6, 7)])
    with pytest.raises(CaptionFileError, match=r"7 image id\(s\) are not in the split, e.g. 1 \(item 1\), 2 \(item 2\)"
                       ) as err:
        load_caption_file(path, SPLIT)
    assert "7 (item 7)" not in str(err.value)  # the first few only


def test_duplicates_are_named(tmp_path):
    path = _write(tmp_path / "res.json", [{"image_id": 391895, "caption": "x"}, {"image_id": "391895", "caption": "y"}])
    with pytest.raises(CaptionFileError, match=r"captioned more than once, e.g. 391895 \(item 0 and item 1\)"):
        load_caption_file(path, SPLIT)


def test_a_file_mixing_tasks_is_refused(tmp_path):
    lines = [_lmms(391895, "a", prefix="coco"), _lmms(522418, "b", prefix="flickr")]
    path = _write(tmp_path / "mixed.jsonl", "\n".join(json.dumps(x) for x in lines))
    with pytest.raises(CaptionFileError, match="line 2 has entries of task"):
        load_caption_file(path, SPLIT)


def test_disagreeing_metric_entries_are_refused(tmp_path):
    record = _lmms(391895, "a man")
    record["coco_CIDEr"]["pred"] = "another caption"
    path = _write(tmp_path / "odd.jsonl", json.dumps(record))
    with pytest.raises(CaptionFileError, match="disagree"):
        load_caption_file(path, SPLIT)


def test_the_file_digest_is_in_the_rows_identity(tmp_path, write_config):
    from bench.config import load_config
    from bench.score import ScoreRequest, make_job

    cfg = load_config(write_config("suites:\n  mini:\n    tasks: [shapes]\n    models: [constant]\n"))
    one = load_caption_file(_write(tmp_path / "a.json", [{"image_id": 391895, "caption": "a dog"}]), SPLIT)
    two = load_caption_file(_write(tmp_path / "b.json", [{"image_id": 391895, "caption": "a cat"}]), SPLIT)
    request = ScoreRequest("mini", "shapes", "test", "x", "diffusion", [one.path])
    jobs = [make_job(cfg, request, "shapes", "test", 0, f, tmp_path) for f in (one, two, one)]
    assert jobs[0].identity()["overrides"]["sha256"] == one.sha256
    assert jobs[0].key != jobs[1].key and jobs[0].key == jobs[2].key  # the MLflow run's bench.key tag
