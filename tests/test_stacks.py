"""Inference stacks (dtype, stack) as settings: declared, validated, recorded; LaDiC's bf16 and compiled paths."""

from __future__ import annotations

import pytest
import torch

from bench.api import Captioner
from bench.phases.latency import headline, inference_stack
from models.ladic.captioner import LaDiCCaptioner
from tasks.shapes import ShapesTask

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: small models run faster on one


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    return ShapesTask(seed=0, train=12, val=2, test=4, root=tmp_path_factory.mktemp("shapes")).samples("train")


@pytest.fixture()
def tiny(samples):
    torch.manual_seed(0)
    model = LaDiCCaptioner(LaDiCCaptioner.variant_config("ladic-tiny"))
    model.prepare(samples)
    model.module.eval()
    return model


@pytest.fixture(scope="module")
def pixels(samples):
    model = LaDiCCaptioner(LaDiCCaptioner.variant_config("ladic-tiny"))
    return torch.stack([model.preprocess(s.load_image()) for s in samples[:2]])


DECODING = {"steps": 3, "guidance": 1.0, "back_and_refine": True, "seed": 5}


def test_every_captioner_declares_supported_stacks():
    from bench.registry import captioner_class, captioners

    for name in captioners.names():
        cls = captioner_class(name)
        assert "eager" in cls.stacks and "fp32" in cls.dtypes, cls.__name__
        assert set(cls.stacks) <= {"eager", "compiled", "graph"} and set(cls.dtypes) <= {"fp32", "bf16"}
        assert cls.describe(name)["stacks"] == list(cls.stacks)


def test_unsupported_stack_or_dtype_names_the_captioner_and_what_it_supports():
    with pytest.raises(ValueError, match=r"stack 'graph' is not supported by LaDiCCaptioner \(CUDA-graph.*"
                                         r"supported: eager, compiled"):
        LaDiCCaptioner.check_stack("fp32", "graph")
    with pytest.raises(ValueError, match=r"dtype 'fp16' is not supported by LaDiCCaptioner; supported: fp32, bf16"):
        LaDiCCaptioner.check_stack("fp16", "eager")
    assert Captioner.stacks == ("eager",) and Captioner.dtypes == ("fp32",)  # the default: nothing claimed


def test_bf16_converts_weights_keeps_sampler_fp32_and_restores_exact_weights(tiny, pixels):
    before = {k: v.clone() for k, v in tiny.module.state_dict().items()}
    fp32 = tiny.caption(pixels, **DECODING)
    tiny.set_stack("bf16", "eager")
    assert {p.dtype for p in tiny.module.diffuser.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in tiny.module.image_encoder.parameters()} <= {torch.bfloat16}
    assert tiny.module.latent.mean.dtype == torch.float32  # the latent head and statistics stay fp32
    seen = []
    original = tiny.diffusion.sample

    def spy(denoise, noise, *args, **kwargs):
        seen.append(noise.draw().dtype)  # the noise the sampler starts from
        trace = original(denoise, noise, *args, **kwargs)
        seen.append(trace.x0.dtype)  # and the state it ends with
        return trace

    tiny.diffusion.sample = spy
    try:
        captions = tiny.caption(pixels, **DECODING)
    finally:
        del tiny.diffusion.sample
    assert seen == [torch.float32, torch.float32] and len(captions) == len(pixels)
    record = tiny.stack_record()
    assert record["dtype"] == "bf16" and record["stack"] == "eager" and "graph" in record["unsupported"]
    tiny.set_stack("fp32", "eager")
    after = tiny.module.state_dict()
    assert all(torch.equal(before[k], after[k]) and before[k].dtype == after[k].dtype for k in before)
    assert tiny.caption(pixels, **DECODING) == fp32


def test_unconditional_kv_is_keyed_by_dtype(tiny, pixels):
    tiny.caption(pixels, **DECODING)
    assert tiny._uncond[1][0][0].dtype == torch.float32
    tiny.set_stack("bf16", "eager")
    tiny.caption(pixels, **DECODING)
    assert tiny._uncond[1][0][0].dtype == torch.bfloat16  # recomputed, not the fp32 K/V recast
    tiny.set_stack("fp32", "eager")


def test_latency_stack_context_records_and_restores(tiny):
    with inference_stack(tiny, {"dtype": "bf16", "stack": "eager"}):
        assert tiny.inference_dtype == "bf16"
    assert (tiny.inference_dtype, tiny.inference_stack) == ("fp32", "eager")
    with pytest.raises(ValueError, match="not supported by LaDiCCaptioner"), \
            inference_stack(tiny, {"dtype": "fp32", "stack": "graph"}):
        pass
    report = {"batch1": {"median_s": 1.0, "p90_s": 1.0, "network_evals": 3}, "throughput": [],
              "environment": {"device": "cpu", "dtype": "bfloat16"}, "stack": tiny.stack_record()}
    assert headline(report)["stack"] == "eager"


@pytest.mark.slow
def test_compiled_and_eager_give_identical_captions_in_fp32(tiny, pixels):
    eager = tiny.caption(pixels[:1], **DECODING)
    tiny.set_stack("fp32", "compiled")
    try:
        compiled = tiny.caption(pixels[:1], **DECODING)
    finally:
        tiny.set_stack("fp32", "eager")
    assert compiled == eager


def test_bench_latency_takes_dtype_and_stack(tiny):
    from models.ladic.benchmark import compare_latency, format_table

    with pytest.raises(ValueError, match="stack 'graph' is not supported by LaDiCCaptioner"):
        compare_latency("ladic-tiny", steps=[1], stack="graph")
    rows = compare_latency("ladic-tiny", steps=[1], n_images=1, warmup=0, model=tiny, dtype="bf16")
    assert {(r["dtype"], r["stack"]) for r in rows} == {("bf16", "eager")}
    assert "bf16 eager" in format_table(rows)
    assert tiny.inference_dtype == "bf16"
    tiny.set_stack("fp32", "eager")


def test_suite_latency_stack_is_checked_against_each_model_before_any_work(write_config):
    from bench.config import ConfigError, load_config
    from bench.validate import validate_suite

    suite = """
executor: {kind: local}
tracking: {kind: none}
suites:
  mini:
    tasks: [shapes]
    phases: [train, latency]
    latency: {stack: %s, dtype: bf16}
    models: [ladic-tiny]
"""
    with pytest.raises(ConfigError, match=r"suites.mini.latency: stack 'graph' is not supported by LaDiCCaptioner"
                                          r".*\(model 'ladic-tiny'\)"):
        validate_suite(load_config(write_config(suite % "graph")), "mini", data=False, create_results=False)
    validate_suite(load_config(write_config(suite % "compiled")), "mini", data=False, create_results=False)


def test_a_chosen_stack_changes_the_latency_job_key_and_the_default_keeps_it(write_config):
    from bench.config import load_config
    from bench.plan import plan_suite

    suite = """
executor: {kind: local}
tracking: {kind: none}
suites:
  mini:
    tasks: [shapes]
    phases: [train, latency]
    latency: %s
    models: [ladic-tiny]
"""

    def key(latency: str) -> str:
        return plan_suite(load_config(write_config(suite % latency)), "mini")[0].key

    assert key("{images: 4}") == key("{images: 4, dtype: fp32, stack: eager}")
    assert key("{images: 4}") != key("{images: 4, dtype: bf16}") != key("{images: 4, stack: compiled}")
    identity = plan_suite(load_config(write_config(suite % "{images: 4}")), "mini")[0].identity()
    assert "dtype" not in identity["latency"] and "stack" not in identity["latency"]


def test_latency_table_dtype_cell_names_a_stack_other_than_eager():
    from bench.report.tables import _dtype_and_stack

    assert _dtype_and_stack({"environment": {"dtype": "float32"}}) == "float32"  # results made before stacks
    assert _dtype_and_stack({"environment": {"dtype": "bfloat16"}, "stack": {"stack": "eager"}}) == "bfloat16"
    assert _dtype_and_stack({"environment": {"dtype": "bfloat16"},
                             "stack": {"stack": "compiled"}}) == "bfloat16, compiled"


def test_a_latency_job_records_its_stack_in_latency_json_and_the_result(write_config):
    from bench.config import load_config
    from bench.plan import plan_suite
    from bench.results import read_json
    from bench.runner import run_job

    suite = """
executor: {kind: local}
tracking: {kind: none}
suites:
  mini:
    tasks: [shapes]
    phases: [train, latency]
    latency: {images: 1, batch_sizes: [1], repeats: 1, warmup: 0}
    models: [constant]
"""
    job = plan_suite(load_config(write_config(suite)), "mini")[0]
    result = run_job(job)
    stack = read_json(job.dir / "latency.json")["stack"]
    assert (stack["dtype"], stack["stack"], stack["stacks"]) == ("fp32", "eager", ["eager"])
    assert set(stack["unsupported"]) == {"compiled", "graph"} and result["latency"]["stack"] == "eager"


def test_a_stack_before_the_network_exists_is_an_error_but_the_default_is_not():
    model = LaDiCCaptioner(LaDiCCaptioner.variant_config("ladic-tiny"))
    model.set_stack("fp32", "eager")
    with pytest.raises(RuntimeError, match="call prepare"):
        model.set_stack("bf16", "eager")
    assert model.inference_dtype == "fp32"
