"""Scoring equals pycocoevalcap's own COCOEvalCap pipeline on a generated set."""

import json
import os

import pytest

from bench.metrics.meteor import close_pool
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


# -- line breaks inside texts -------------------------------------------------------------------

BREAKS = ("\r", "\n", "\r\n", "\u2028", "\u2029", "\v", "\f", "\x85", "\t")


def _with_breaks(refs: dict[str, list[str]], joiner) -> dict[str, list[str]]:
    """The references with one break (or `joiner(break)`) inside a reference of every other image."""
    out = {i: list(r) for i, r in refs.items()}
    for n, image_id in enumerate(sorted(out)[1::2]):
        words = out[image_id][1].split()
        out[image_id][1] = " ".join(words[:2]) + joiner(BREAKS[n % len(BREAKS)]) + " ".join(words[2:])
    return out


def test_line_breaks_in_references_and_captions_do_not_shift_images(tiny_shapes):
    refs = tiny_shapes.references("test")
    assert len(refs) == 12
    captions = _caption_set(tiny_shapes)
    first = sorted(captions)[0]
    captions[first] = captions[first].replace(" ", "\u2028", 1)  # a break in a caption too
    metrics = ("BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr")
    broken = score_captions(captions, _with_breaks(refs, lambda b: b), metrics=metrics)
    spaced = score_captions({i: c.replace("\u2028", " ") for i, c in captions.items()},
                            _with_breaks(refs, lambda b: " "), metrics=metrics)
    assert broken.corpus == spaced.corpus and broken.per_image == spaced.per_image
    # and each image is scored against its own references: scoring it alone gives the same BLEU
    for image_id in sorted(captions)[:4]:
        alone = score_captions({image_id: captions[image_id]}, _with_breaks(refs, lambda b: " "),
                               metrics=("BLEU-1",))
        assert alone.corpus["BLEU-1"] == pytest.approx(broken.per_image[image_id]["BLEU-1"], abs=1e-12)


def test_a_tokenizer_that_returns_another_line_count_is_an_error_not_a_score(monkeypatch):
    import bench.metrics.ptb as ptb

    assert ptb.one_line("a\rb\u2028c\u2029d\ve\ff\x85g\th\ni") == "a b c d e f g h i"
    seen = []
    # what Stanford's tokenizer did with a carriage return: one more line than texts
    monkeypatch.setattr(ptb, "ptb_lines", lambda lines: seen.extend(lines) or [*lines, "x"])
    with pytest.raises(RuntimeError, match=r"returned 3 line\(s\) for 2 reference\(s\)"):
        ptb.tokenize({"a": ["one\rtwo"], "b": ["three"]}, "reference")
    assert seen == ["one two", "three"]
    monkeypatch.setattr(ptb, "ptb_lines", lambda lines: ["one , two .", "three"])
    assert ptb.tokenize({"a": ["one, two."], "b": ["three"]}) == {"a": ["one two"], "b": ["three"]}


def test_a_german_jvm_locale_does_not_change_meteor(tiny_shapes, monkeypatch):
    refs = tiny_shapes.references("test")
    captions = _caption_set(tiny_shapes)
    plain = score_captions(captions, refs, metrics=("METEOR",))
    close_pool()  # the jar pooled by the first scoring must not answer: a new one starts under German
    monkeypatch.setenv("JAVA_TOOL_OPTIONS", "-Duser.language=de -Duser.country=DE")
    monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")
    german = score_captions(captions, refs, metrics=("METEOR",))
    assert german.unavailable == {} and 0 < plain.corpus["METEOR"] < 1
    assert german.corpus == plain.corpus and german.per_image == plain.per_image
    assert os.environ["JAVA_TOOL_OPTIONS"] == "-Duser.language=de -Duser.country=DE"  # restored


def test_a_runaway_caption_is_scored_as_it_is_and_named_in_the_notes():
    refs = {"a": ["a red circle"], "b": ["two blue squares"], "c": ["a green triangle"]}
    plain = score_captions({"a": "a red circle", "b": "two squares", "c": "a triangle"}, refs, ("BLEU-1",))
    assert plain.notes == []
    runaway = score_captions({"a": "a red circle", "b": " ".join(["blue"] * 101), "c": "x " * 5000}, refs,
                             ("BLEU-1",))
    assert runaway.notes == ["2 caption(s) over 100 words (longest: 5000 words, image c), scored as they "
                             "are: a runaway generation?"]
    assert 0 < runaway.corpus["BLEU-1"] < plain.corpus["BLEU-1"]  # scored, not cut


# -- SPICE --------------------------------------------------------------------------------------


def test_spice_command_opens_jdk_packages_on_java_9_and_later(tmp_path):
    from bench.metrics.spice import ADD_OPENS, parse_java_major, spice_command

    assert parse_java_major('openjdk version "17.0.15" 2025-04-15') == 17
    assert parse_java_major('java version "1.8.0_312"') == 8
    assert parse_java_major("no java here") == 0
    command = spice_command(tmp_path / "in.json", tmp_path / "out.json", tmp_path / "cache", 17)
    assert command[0] == "java" and command.index("-jar") > command.index(ADD_OPENS[0])
    assert "--add-opens=java.base/java.lang=ALL-UNNAMED" in command  # where FST reflects first
    assert command[command.index("-jar") + 1:command.index("-jar") + 3] == ["-Xmx8G", "spice-1.0.jar"]
    assert not any(a.startswith("--add-opens") for a in spice_command(tmp_path, tmp_path, tmp_path, 8))


def test_the_local_jvm_accepts_spices_options():
    import subprocess

    from bench.metrics.spice import ADD_OPENS, java_major

    if java_major() < 9:
        pytest.skip("Java 8 takes no --add-opens (and SPICE needs none there)")
    done = subprocess.run(["java", *ADD_OPENS, "-version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr  # an unknown package would be warned about and not opened


def _fake_spice(monkeypatch, outcome):
    """Run SPICE through a fake JVM: `outcome(command, items)` returns (returncode, stderr, scores or None)."""
    import subprocess

    import bench.metrics.quality as quality
    import bench.metrics.spice as spice

    calls = []

    def run(command, cwd):
        items = json.loads(open(command[command.index("-jar") + 3]).read())
        code, stderr, scores = outcome(command, items)
        if scores is not None:
            out = command[command.index("-out") + 1]
            with open(out, "w") as f:
                json.dump([{"image_id": it["image_id"], "scores": {"All": {"f": s}}}
                           for it, s in zip(items, scores, strict=True)], f)
        calls.append(command)
        return subprocess.CompletedProcess(command, code, "", stderr)

    monkeypatch.setattr(quality, "spice_missing_reason", lambda: None)
    monkeypatch.setattr(spice, "_run_java", run)
    monkeypatch.setattr(spice, "java_major", lambda: 17)
    return calls


def test_a_failing_spice_is_unavailable_with_javas_reason_and_the_rest_stands(tiny_shapes, monkeypatch):
    java_error = ("Exception in thread \"main\" java.lang.ExceptionInInitializerError\n"
                  "Caused by: java.lang.reflect.InaccessibleObjectException: Unable to make field private "
                  "final byte[] java.lang.String.value accessible")
    calls = _fake_spice(monkeypatch, lambda command, items: (1, java_error, None))
    refs = tiny_shapes.references("test")
    captions = _caption_set(tiny_shapes)
    scores = score_captions(captions, refs, metrics=("BLEU-4", "CIDEr", "SPICE"))
    assert len(calls) == 1 and "--add-opens=java.base/java.lang=ALL-UNNAMED" in calls[0]
    assert "InaccessibleObjectException" in scores.unavailable["SPICE"]
    assert "exited with status 1" in scores.unavailable["SPICE"]
    assert set(scores.corpus) == {"BLEU-4", "CIDEr"}
    assert all(set(s) == {"BLEU-4", "CIDEr"} for s in scores.per_image.values())


def test_spice_scores_are_read_and_a_nan_makes_spice_unavailable(tiny_shapes, monkeypatch):
    refs = tiny_shapes.references("test")
    captions = _caption_set(tiny_shapes)
    _fake_spice(monkeypatch, lambda command, items: (0, "", [0.25 * (n % 4) for n in range(len(items))]))
    good = score_captions(captions, refs, metrics=("BLEU-4", "SPICE"))
    ids = sorted(captions)
    assert good.corpus["SPICE"] == pytest.approx(sum(0.25 * (n % 4) for n in range(12)) / 12)
    assert [good.per_image[i]["SPICE"] for i in ids[:4]] == [0.0, 0.25, 0.5, 0.75]
    _fake_spice(monkeypatch, lambda command, items: (0, "", [None] + [0.5] * (len(items) - 1)))
    nan = score_captions(captions, refs, metrics=("BLEU-4", "SPICE"))
    assert "SPICE" not in nan.corpus and "NaN for 1 of 12 image(s)" in nan.unavailable["SPICE"]
    assert nan.corpus["BLEU-4"] == good.corpus["BLEU-4"]


def test_an_empty_caption_is_scored_as_empty_not_shifted(tiny_shapes):
    """A model may end a caption at once: the blank caption scores 0 and no other image moves."""
    refs = tiny_shapes.references("test")
    captions = _caption_set(tiny_shapes)
    first, second = sorted(captions)[:2]
    with_empty = {**captions, first: ""}
    scored = score_captions(with_empty, refs, metrics=("BLEU-1", "CIDEr"))
    assert scored.per_image[first]["CIDEr"] == 0.0
    alone = score_captions({second: captions[second]}, refs, metrics=("BLEU-1",))
    assert alone.corpus["BLEU-1"] == pytest.approx(scored.per_image[second]["BLEU-1"], abs=1e-12)
