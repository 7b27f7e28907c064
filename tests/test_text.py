"""Text edge cases: control characters in captions, images whose references are all empty, file modes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from bench.metrics.ptb import one_line
from tasks.checks import check_task, format_check
from tasks.flickr30k import Flickr30kTask
from tests.test_datasets import make_flickr30k

ROOT = Path(__file__).resolve().parents[1]


def _with_references(root: Path, edits: dict[int, list[str]]) -> None:
    """Rewrite the reference captions of some images of a tiny Flickr30k (entry index -> raw captions)."""
    path = root / "dataset_flickr30k.json"
    data = json.loads(path.read_text())
    for index, raws in edits.items():
        data["images"][index]["sentences"] = [{"raw": raw, "tokens": raw.split()} for raw in raws]
    path.write_text(json.dumps(data))


def test_control_characters_in_captions_become_spaces_before_tokenising():
    assert one_line("\x00").strip() == ""
    assert one_line("a\x00red\x1bcircle\x7f\x9b") == "a red circle  "


def test_nul_only_and_blank_references_are_dropped_and_control_characters_cleaned(tmp_path):
    make_flickr30k(tmp_path / "f30k", broken=False)
    _with_references(tmp_path / "f30k", {0: ["\x00", "a red\x00circle ", "  ", "\x00\x00 \x00"]})
    sample = Flickr30kTask(root=tmp_path / "f30k").samples("train")[0]
    assert sample.references == ("a red circle",)


def test_an_image_whose_references_are_all_empty_fails_the_data_check(tmp_path):
    make_flickr30k(tmp_path / "f30k", broken=False)
    entries = json.loads((tmp_path / "f30k" / "dataset_flickr30k.json").read_text())["images"]
    _with_references(tmp_path / "f30k", {4: ["", "\x00", " \t "]})  # the val image
    report = check_task(Flickr30kTask(root=tmp_path / "f30k", expected={"train": 4, "val": 1, "test": 2}))
    assert report.exit_code == 1
    assert report.splits["val"].unreferenced == [Path(entries[4]["filename"]).stem]
    assert "1 image(s) whose reference captions are all empty" in format_check(report)


def test_result_files_are_readable_as_the_umask_says():
    code = ("import os, sys; from pathlib import Path; os.umask(int(sys.argv[2], 8)); "
            "from bench.results import write_json; write_json(Path(sys.argv[1]), {'a': 1})")
    for umask, mode in (("022", 0o644), ("077", 0o600), ("002", 0o664)):
        path = Path(f"{os.environ.get('TMPDIR', '/tmp')}/bench-mode-{os.getpid()}-{umask}.json")
        try:
            subprocess.run([sys.executable, "-c", code, str(path), umask], check=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
            assert stat.S_IMODE(path.stat().st_mode) == mode, umask
        finally:
            path.unlink(missing_ok=True)
