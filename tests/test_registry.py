import subprocess
import sys

import pytest

from bench.registry import Registry, RegistryError, captioners, create_task, tasks


def test_listing_imports_no_heavy_module():
    code = ("import sys; from bench.registry import captioners, tasks; captioners.names(); tasks.names();"
            "import bench.cli; print(sorted(m for m in ('torch', 'ray', 'mlflow', 'transformers') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_name_suggests_close_ones():
    with pytest.raises(RegistryError, match="(?i)did you mean 'vit-gpt2-mini'"):
        captioners.entry("vit-gpt2-mni")


def test_every_entry_resolves_to_a_class_that_knows_its_variant():
    for entry in captioners.entries():
        cls = captioners.resolve(entry.name)
        assert entry.name in cls.variants, f"{entry.name}: {cls.__name__}.variants lacks it"
        assert cls.paradigm == entry.paradigm, entry.name


def test_task_entries_resolve():
    assert {"shapes", "coco", "flickr30k", "karpathy"} <= set(tasks.names())
    task = create_task("karpathy", split_file="x.json", image_root=".")
    assert task.split_file.name == "x.json"


def test_entry_point_plugins_are_registered(monkeypatch):
    import importlib.metadata as md

    class FakeEntryPoint:
        name = "my-captioner"
        value = "my_pkg.model:MyCaptioner"

        def load(self):
            class MyCaptioner:
                """My captioner, from a plugin."""

                paradigm = "diffusion"

            return MyCaptioner

    monkeypatch.setattr(md, "entry_points", lambda group: [FakeEntryPoint()] if group == "g" else [])
    registry = Registry("captioner", "g", "models")
    assert "my-captioner" in registry.names()
    entry = registry.entry("my-captioner")
    assert entry.description == "My captioner, from a plugin." and entry.paradigm == "diffusion"


def test_bad_target_is_a_clear_error():
    registry = Registry("captioner", "none", "models")
    registry.register("broken", "no_such_module:Thing", "broken on purpose")
    with pytest.raises(RegistryError, match="no_such_module"):
        registry.resolve("broken")
