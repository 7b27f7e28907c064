"""COCO, Flickr30k and configured Karpathy-format sets: loading, `bench data check`, `bench data prepare`,
and a tiny train + eval job, all on small datasets written here in the exact published formats (Karpathy
JSON, folder and file names as distributed), each with one corrupt and one missing image."""

from __future__ import annotations

import io
import json
import random
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from tasks.checks import check_task, format_check, resolve_task
from tasks.coco import CocoTask
from tasks.flickr30k import Flickr30kTask
from tasks.karpathy import DatasetError
from tasks.prepare import format_prepare, prepare

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 200, 30)}
GARBAGE = b"<html><body>404 Not Found</body></html>"  # what a failed download often leaves behind


def _jpeg_bytes(colour: str, seed: int) -> bytes:
    rng = random.Random(seed)
    base = COLOURS[colour]
    noise = bytes(max(0, min(255, base[i % 3] + rng.randint(-30, 30))) for i in range(40 * 30 * 3))
    buffer = io.BytesIO()
    Image.frombytes("RGB", (40, 30), noise).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _entry(imgid: int, filename: str, split: str, colour: str, filepath: str | None = None,
           cocoid: int | None = None) -> dict:
    raws = [f"a {colour} picture", f"A photo that is mostly {colour}.", f"{colour} noise on a small image",
            f"an image in {colour}", f"Mostly {colour} pixels"]
    sentences = [{"tokens": r.lower().strip(".").split(), "raw": r, "imgid": imgid, "sentid": imgid * 5 + k}
                 for k, r in enumerate(raws)]
    entry = {"filename": filename, "imgid": imgid, "split": split, "sentences": sentences,
             "sentids": [s["sentid"] for s in sentences]}
    if filepath is not None:
        entry = {"filepath": filepath, "sentids": entry["sentids"], **entry, "cocoid": cocoid}
    return entry


def _write_images(folder: Path, entries: list[dict], kinds: dict[str, str]) -> None:
    """Write each entry's image; kinds: filename -> 'missing' | 'corrupt' | 'truncated'."""
    for n, e in enumerate(entries):
        path = folder / e.get("filepath", "") / e["filename"]
        path.parent.mkdir(parents=True, exist_ok=True)
        kind = kinds.get(e["filename"], "ok")
        if kind == "missing":
            continue
        data = _jpeg_bytes(list(COLOURS)[n % len(COLOURS)], n)
        path.write_bytes({"ok": data, "corrupt": GARBAGE, "truncated": data[: int(len(data) * 0.7)]}[kind])


def make_coco(root: Path) -> dict[str, str]:
    """A tiny COCO: train 6 (train2014) + restval 3 (val2014) / val 2 / test 4. Returns the odd image ids."""
    plan = [("train", "train2014")] * 6 + [("restval", "val2014")] * 3 + [("val", "val2014")] * 2 + \
        [("test", "val2014")] * 4
    entries = []
    for imgid, (split, folder) in enumerate(plan):
        cocoid = 391895 + 7 * imgid
        name = f"COCO_{folder}_{cocoid:012d}.jpg"
        entries.append(_entry(imgid, name, split, list(COLOURS)[imgid % 4], folder, cocoid))
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_coco.json").write_text(json.dumps({"images": entries, "dataset": "coco"}))
    odd = {"restval_corrupt": entries[7], "val_truncated": entries[9], "test_corrupt": entries[12],
           "test_missing": entries[14]}
    _write_images(root, entries, {odd["restval_corrupt"]["filename"]: "corrupt",
                                  odd["val_truncated"]["filename"]: "truncated",
                                  odd["test_corrupt"]["filename"]: "corrupt",
                                  odd["test_missing"]["filename"]: "missing"})
    return {k: str(e["cocoid"]) for k, e in odd.items()}


def make_flickr30k(root: Path, broken: bool = True) -> list[dict]:
    """A tiny Flickr30k: train 4 / val 1 / test 2 in flickr30k-images/ (one corrupt, one missing in test)."""
    splits = ["train"] * 4 + ["val"] + ["test"] * 2
    entries = [_entry(i, f"{1000092795 + 1000 * i}.jpg", split, list(COLOURS)[i % 4])
               for i, split in enumerate(splits)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_flickr30k.json").write_text(json.dumps({"images": entries, "dataset": "flickr30k"}))
    kinds = {entries[5]["filename"]: "corrupt", entries[6]["filename"]: "missing"} if broken else {}
    _write_images(root / "flickr30k-images", entries, kinds)
    return entries


@pytest.fixture
def tiny_coco(tmp_path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "coco"
    return root, make_coco(root)


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch):
    for name in ("COCO_ROOT", "FLICKR30K_ROOT"):
        monkeypatch.delenv(name, raising=False)


# -- loading ----------------------------------------------------------------------------------


def test_coco_merges_restval_and_keeps_references_of_missing_images(tiny_coco):
    root, odd = tiny_coco
    task = CocoTask(root=root)
    assert [len(task.listed(s)) for s in ("train", "val", "test")] == [9, 2, 4]
    assert [len(task.samples(s)) for s in ("train", "val", "test")] == [9, 2, 3]
    assert task.missing("test") == [odd["test_missing"]] and task.missing("train") == []
    refs = task.references("test")
    assert len(refs) == 4 and len(refs[odd["test_missing"]]) == 5  # scoring still sees its references
    by_id = {s.image_id: s for s in task.samples("train")}
    assert by_id["391895"].image_path == root / "train2014" / "COCO_train2014_000000391895.jpg"
    assert by_id[odd["restval_corrupt"]].image_path.parent == root / "val2014"
    assert by_id["391895"].load_image().size == (40, 30)
    with pytest.raises(OSError):
        by_id[odd["restval_corrupt"]].load_image()
    assert task.info().sizes == {"train": 9, "val": 2, "test": 4}
    assert "images.cocodataset.org/zips/train2014.zip" in task.info().source


def test_locations_from_environment_options_and_variables(tiny_coco, monkeypatch, tmp_path):
    root, _ = tiny_coco
    monkeypatch.setenv("COCO_ROOT", str(root))
    assert len(CocoTask().listed("train")) == 9 and CocoTask().root_origin == "$COCO_ROOT"
    assert CocoTask(root=tmp_path / "elsewhere").root == tmp_path / "elsewhere"  # the option wins
    monkeypatch.delenv("COCO_ROOT")
    monkeypatch.setenv("MY_DATA", str(root.parent))
    explicit = CocoTask(split_file="${MY_DATA}/coco/dataset_coco.json", image_root="$MY_DATA/coco")
    assert explicit.root is None and len(explicit.samples("test")) == 3


def test_no_location_names_the_variable_and_where_files_are_published():
    with pytest.raises(DatasetError) as err:
        CocoTask()
    text = str(err.value)
    assert "COCO_ROOT" in text and "tasks.coco.root" in text
    assert "caption_datasets.zip" in text and "val2014.zip" in text and "bench data prepare" in text


def test_missing_root_and_missing_image_folder_are_setup_errors(tiny_coco, tmp_path):
    with pytest.raises(DatasetError, match="data folder not found: .*nowhere"):
        CocoTask(root=tmp_path / "nowhere").samples("test")
    root, _ = tiny_coco
    for image in (root / "train2014").iterdir():
        image.unlink()
    (root / "train2014").rmdir()
    task = CocoTask(root=root)
    with pytest.raises(DatasetError, match="image folder.*train2014"):
        task.samples("train")
    assert len(task.samples("test")) == 3  # splits whose folders exist still load


def test_flickr30k_uses_file_stems_as_ids(tmp_path):
    make_flickr30k(tmp_path / "f30k")
    task = Flickr30kTask(root=tmp_path / "f30k")
    assert [len(task.listed(s)) for s in ("train", "val", "test")] == [4, 1, 2]
    assert task.samples("train")[0].image_id == "1000092795"
    assert task.samples("train")[0].image_path.parent == tmp_path / "f30k" / "flickr30k-images"
    assert task.missing("test") == ["1000098795"]


def test_a_karpathy_set_by_configuration_alone(tmp_path, monkeypatch):
    """Flickr8k (or any Karpathy-format set): `type: karpathy` with paths, env variables expanded."""
    from bench.config import load_config
    from bench.registry import tasks

    root = tmp_path / "flickr8k"
    entries = [_entry(i, f"{1000268201 + i}_693b08cb0e.jpg", s, "red") for i, s in
               enumerate(["train", "train", "val", "test"])]
    root.mkdir()
    (root / "dataset_flickr8k.json").write_text(json.dumps({"images": entries, "dataset": "flickr8k"}))
    _write_images(root / "Flicker8k_Dataset", entries, {})
    monkeypatch.setenv("FLICKR8K_ROOT", str(root))
    config = tmp_path / "bench.yaml"
    config.write_text(textwrap.dedent("""\
        tasks:
          flickr8k: {type: karpathy, split_file: "${FLICKR8K_ROOT}/dataset_flickr8k.json",
                     image_root: "${FLICKR8K_ROOT}/Flicker8k_Dataset", expected: {train: 2, val: 1, test: 1}}
        suites:
          f8k: {tasks: [flickr8k], models: [constant]}
        """))
    kind, options = load_config(config).task_options("flickr8k")
    task = tasks.resolve(kind)(**options)  # as the runner builds it
    assert [len(task.samples(s)) for s in ("train", "val", "test")] == [2, 1, 1]
    report = check_task(resolve_task("flickr8k", config=config))
    assert report.ok and report.task == "flickr8k" and report.splits["train"].expected == 2


# -- check ------------------------------------------------------------------------------------


def test_check_counts_against_the_papers_and_lists_bad_images(tiny_coco):
    root, odd = tiny_coco
    report = check_task(CocoTask(root=root))
    assert not report.ok and report.exit_code == 1
    assert {s: (c.listed, c.expected) for s, c in report.splits.items()} == \
        {"train": (9, 113_287), "val": (2, 5_000), "test": (4, 5_000)}
    assert [i for i, _ in report.splits["test"].missing] == [odd["test_missing"]]
    assert [u[0] for u in report.splits["test"].unreadable] == [odd["test_corrupt"]]
    assert [u[0] for u in report.splits["train"].unreadable] == [odd["restval_corrupt"]]
    assert report.splits["val"].unreadable == []  # a truncated JPEG passes the header check
    text = format_check(report, show=1)
    assert "113,287" in text and "count differs" in text and "... and 1 more" in text
    assert "unreadable images (2)" in text and "missing images (1)" in text
    for url in ("cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip",
                "images.cocodataset.org/zips/train2014.zip", "images.cocodataset.org/zips/val2014.zip"):
        assert url in text


def test_deep_check_decodes_and_quick_check_opens_nothing(tiny_coco):
    root, odd = tiny_coco
    deep = check_task(CocoTask(root=root), level="decode")
    assert [u[0] for u in deep.splits["val"].unreadable] == [odd["val_truncated"]]
    assert "truncated" in deep.splits["val"].unreadable[0][2]
    quick = check_task(CocoTask(root=root), level="exists")
    assert all(not s.unreadable for s in quick.splits.values())
    assert len(quick.splits["test"].missing) == 1


def test_check_of_a_complete_set_with_expected_override_passes(tmp_path):
    make_flickr30k(tmp_path / "f30k", broken=False)
    report = check_task(Flickr30kTask(root=tmp_path / "f30k", expected={"train": 4, "val": 1, "test": 2}))
    assert report.ok and report.exit_code == 0
    assert "OK: flickr30k is complete" in format_check(report)
    capped = check_task(Flickr30kTask(root=tmp_path / "f30k", max_images={"train": 2}))
    assert capped.splits["train"].expected == 2 and capped.splits["test"].expected == 1_000


def test_check_of_a_missing_directory_raises_the_remedy(tmp_path):
    with pytest.raises(DatasetError) as err:
        check_task(resolve_task("coco", config=None, root=str(tmp_path / "missing")))
    assert "data folder not found" in str(err.value) and "train2014.zip" in str(err.value)


def test_cli_data_check_on_a_missing_directory_exits_without_traceback(tmp_path, capsys):
    from bench.cli import build_parser, main

    if "data" not in build_parser()._subparsers._group_actions[0].choices:
        pytest.skip("`bench data` is not wired into bench/cli.py yet")
    code = main(["data", "check", "--task", "coco", "--root", str(tmp_path / "missing"),
                 "--config", str(tmp_path / "no-config.yaml")])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err and "bench data prepare" in err


# -- prepare ----------------------------------------------------------------------------------


def _zip(path: Path, files: dict[str, Path | bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, src in files.items():
            z.writestr(name, src if isinstance(src, bytes) else src.read_bytes())
    return path


def test_prepare_arranges_published_archives(tiny_coco, tmp_path):
    src, odd = tiny_coco
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    archives = [
        _zip(downloads / "caption_datasets.zip", {"dataset_coco.json": src / "dataset_coco.json",
                                                  "dataset_flickr8k.json": b"{}"}),
        _zip(downloads / "train2014.zip", {f"train2014/{p.name}": p for p in (src / "train2014").iterdir()}),
        _zip(downloads / "val2014.zip", {f"val2014/{p.name}": p for p in (src / "val2014").iterdir()}
             | {"__MACOSX/val2014/._x.jpg": b"junk"}),
    ]
    report = prepare("coco", tmp_path / "data" / "coco", archives, config=None)
    assert report.exit_code == 0 and not report.unused
    assert sorted((a.item, a.action) for a in report.actions) == [
        ("dataset_coco.json", "extracted"), ("train2014", "extracted"), ("val2014", "extracted")]
    root = tmp_path / "data" / "coco"
    assert sorted(p.name for p in root.iterdir()) == ["dataset_coco.json", "train2014", "val2014"]
    assert not (root / "val2014" / "._x.jpg").exists()
    check = check_task(CocoTask(root=root))
    assert [i for i, _ in check.splits["test"].missing] == [odd["test_missing"]]
    assert "layout complete" in format_prepare(report)
    again = prepare("coco", root, archives[:1], config=None)  # idempotent: present items are kept
    assert {a.action for a in again.actions} == {"present"}


def test_prepare_links_folders_and_extracts_tarballs(tmp_path):
    src = tmp_path / "src"
    make_flickr30k(src)
    tarball = tmp_path / "flickr30k-images.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        # as some mirrors pack it: another folder name, nested in itself
        tar.add(src / "flickr30k-images", arcname="flickr30k_images/flickr30k_images")
    caption_dir = tmp_path / "caption_datasets"
    caption_dir.mkdir()
    (caption_dir / "dataset_flickr30k.json").write_bytes((src / "dataset_flickr30k.json").read_bytes())
    report = prepare("flickr30k", tmp_path / "f30k", [caption_dir, tarball], config=None)
    actions = {a.item: a.action for a in report.actions}
    assert actions == {"dataset_flickr30k.json": "symlinked", "flickr30k-images": "extracted"}
    assert (tmp_path / "f30k" / "dataset_flickr30k.json").is_symlink()
    assert len(Flickr30kTask(root=tmp_path / "f30k").samples("train")) == 4


def test_prepare_says_what_is_still_missing_and_where_it_is_published(tmp_path):
    downloads = tmp_path / "dl"
    downloads.mkdir()
    (downloads / "readme.txt").write_text("not a dataset")
    report = prepare("coco", tmp_path / "coco", [downloads / "readme.txt"], config=None)
    assert report.exit_code == 1 and report.unused == [str(downloads / "readme.txt")]
    text = format_prepare(report)
    assert "still missing" in text and "images.cocodataset.org/zips/val2014.zip" in text
    with pytest.raises(DatasetError, match="no known layout"):
        prepare("shapes", tmp_path / "x", [], config=None)


# -- runs -------------------------------------------------------------------------------------


def test_captioning_in_dataloader_workers_skips_and_counts_unreadable_images(tiny_coco):
    from bench.phases.evaluate import caption_split
    from bench.registry import create_captioner

    root, odd = tiny_coco
    task = CocoTask(root=root)
    captions, unreadable, _ = caption_split(create_captioner("constant"), task.samples("test"), {},
                                            {"batch_size": 2, "num_workers": 1}, log=lambda _: None)
    assert unreadable == [odd["test_corrupt"]] and len(captions) == 2


@pytest.mark.java
@pytest.mark.slow
def test_tiny_train_and_eval_job_on_coco_format(tiny_coco, tmp_path):
    from bench.config import load_config
    from bench.results import read_json
    from bench.suite import run_suite

    root, odd = tiny_coco
    config = tmp_path / "bench.yaml"
    config.write_text(textwrap.dedent(f"""\
        results_dir: {tmp_path / 'results'}
        executor: {{kind: local}}
        tracking: {{kind: none}}
        tasks:
          coco: {{root: {root}}}
        suites:
          coco-tiny:
            tasks: [coco]
            train: {{epochs: 1, batch_size: 8, lr: 1.0e-3, num_workers: 1}}
            eval: {{batch_size: 4, num_workers: 1}}
            models: [vit-gpt2-tiny]
        """))
    cfg = load_config(config)
    (result,) = run_suite(cfg, "coco-tiny", echo=lambda _: None)
    assert result["status"] == "ok", result.get("error")
    job_dir = cfg.results_dir / "coco-tiny" / result["job_id"]
    scores = read_json(job_dir / "scores.json")
    assert scores["images_unreadable"] == [odd["test_corrupt"]]
    assert scores["images_missing"] == [odd["test_missing"]]
    assert scores["images_scored"] == 2 and result["metrics"]["images_skipped"] == 2
    assert read_json(job_dir / "train.json")["skipped_pairs"] == 5  # the corrupt restval image's 5 pairs
    assert "skipped 1 unreadable and 1 missing test image(s)" in (job_dir / "log.txt").read_text()
