"""`bench device-check --vlm`: DiffusionGemma-26B-A4B and Gemma-4-26B-A4B at their real size, on a GPU.

Both are built from their published configurations (models/vlm/configs.py: sources named, guesses
marked) directly on the device in bf16 (`torch.device` context: no CPU initialisation, random weights:
timing and memory do not depend on the values), one at a time (the first is freed before the second is
built). Inputs are what the checkpoints' processor makes of one image: Gemma 4's PIL image processor at
its published settings (280 soft tokens) and a prompt of boi, the soft tokens, eoi and a short
instruction, so no tokenizer or weights are needed.

Measured, batch 1 unless said, after one warm-up, the device synchronised, the median of `--repeats`:
  - DiffusionGemma: one 256-token canvas at fixed denoising steps (`--steps`, adaptive stopping off:
    random weights never become confident), seconds per caption and canvas tokens per second; the
    decoder passes run are counted (they must equal the steps);
  - Gemma 4: greedy decoding forced to `--lengths` tokens (min = max new tokens), seconds per caption,
    seconds per token and tokens per second; forward passes counted;
  - throughput of both at batch `--batch` (images per second) at the first steps value / length.
`--deadline SECONDS` (wall clock from the start) skips what is left once passed, recorded as skipped;
results are written after every model (vlm-results.json and vlm-device-check.md in `--out`).
`--tiny` runs the same code on the tiny test configurations on the CPU (models/vlm/tiny.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

MODELS = ("diffusion_gemma", "gemma4")


def build(name: str, device: str, tiny: bool) -> tuple[Any, dict[str, Any]]:
    """(module in eval mode on `device`, batch-1 inputs) of model `name` (a key of MODELS)."""
    import torch

    if tiny:
        from models.vlm.tiny import build_tiny

        module, processor = build_tiny(name)
        module = module.to(device)
        image_processor, dtype = processor.image_processor, torch.float32
    else:
        from transformers import (
            DiffusionGemmaForBlockDiffusion,
            Gemma4ForConditionalGeneration,
            Gemma4ImageProcessorPil,
        )

        from models.vlm import configs

        config = configs.diffusion_gemma_26b() if name == "diffusion_gemma" else configs.gemma4_26b()
        cls = DiffusionGemmaForBlockDiffusion if name == "diffusion_gemma" else Gemma4ForConditionalGeneration
        dtype = torch.bfloat16
        with torch.device(device):  # parameters are created on the device: no CPU copy of 26B weights
            module = cls._from_config(config, dtype=dtype)
        image_processor = Gemma4ImageProcessorPil(max_soft_tokens=configs.SOFT_TOKENS_PER_IMAGE)
    return module.eval(), inputs(module.config, image_processor, device, dtype)


def inputs(config: Any, image_processor: Any, device: str, dtype: Any) -> dict[str, Any]:
    """One image's inputs as the processor builds them: [bos] boi image x n eoi + 6 text tokens."""
    import numpy as np
    import torch
    from PIL import Image

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (768, 768, 3), dtype=np.uint8))
    enc = image_processor([[image]], return_tensors="pt")
    soft = int(enc["num_soft_tokens_per_image"][0])
    # Ordinary word ids past the special ones (ids under 10 in both vocabularies); values do not matter.
    text = [int(t) for t in rng.integers(10, min(100, config.text_config.vocab_size), 6)]
    ids = [2, config.boi_token_id, *[config.image_token_id] * soft, config.eoi_token_id, *text]
    input_ids = torch.tensor([ids], device=device)
    mm = (input_ids == config.image_token_id).long()
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "mm_token_type_ids": mm,
            "pixel_values": enc["pixel_values"].to(device, dtype),
            "image_position_ids": enc["image_position_ids"].to(device)}


def batched(batch: dict[str, Any], n: int) -> dict[str, Any]:
    return {k: v.repeat(n, *[1] * (v.dim() - 1)) for k, v in batch.items()}


def timed(fn: Any, device: str, repeats: int) -> tuple[list[float], Any]:
    """Seconds of `repeats` calls after one warm-up call, the device synchronised around each."""
    import torch

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    out = fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - start)
    return times, out


def diffusion_call(module: Any, batch: dict[str, Any], steps: int) -> Any:
    """One canvas at exactly `steps` denoising steps (adaptive stopping off), counting decoder passes."""
    import torch

    from models.counting import counted_calls

    def run() -> tuple[Any, int]:
        # generate calls the model's forward directly (no hooks on it): count its decoder's calls
        with torch.no_grad(), counted_calls(module.model.decoder) as passes:
            out = module.generate(**batch, max_new_tokens=module.config.canvas_length, max_length=None,
                                  max_denoising_steps=steps, stability_threshold=None, confidence_threshold=None)
        return out, passes[0]
    return run


def autoregressive_call(module: Any, batch: dict[str, Any], length: int) -> Any:
    """Greedy decoding of exactly `length` new tokens, counting forward passes."""
    import torch

    from models.counting import counted_calls

    def run() -> tuple[Any, int]:
        with torch.no_grad(), counted_calls(module) as passes:
            out = module.generate(**batch, do_sample=False, num_beams=1, max_new_tokens=length,
                                  min_new_tokens=length)
        return out, passes[0]
    return run


def measure(name: str, module: Any, batch: dict[str, Any], args: argparse.Namespace, deadline: float) -> list[dict]:
    """Rows of one model: batch-1 latency per setting, then throughput at `--batch`."""
    rows: list[dict[str, Any]] = []
    settings = [("max_denoising_steps", s) for s in args.steps] if name == "diffusion_gemma" else \
        [("length", n) for n in args.lengths]
    make = diffusion_call if name == "diffusion_gemma" else autoregressive_call
    for batch_size, grid in ((1, settings), (args.batch, settings[:1])):
        for knob, value in grid:
            row = {"model": name, "batch_size": batch_size, knob: value}
            if time.monotonic() > deadline:
                rows.append({**row, "skipped": "deadline passed"})
                continue
            times, (out, passes) = timed(make(module, batched(batch, batch_size), value), args.device, args.repeats)
            median = statistics.median(times)
            tokens = module.config.canvas_length if knob == "max_denoising_steps" else value
            rows.append({**row, "seconds": [round(t, 5) for t in times], "median_s": round(median, 5),
                         "network_passes": passes, "tokens_per_caption": tokens,
                         "tokens_per_s": round(batch_size * tokens / median, 2),
                         "images_per_s": round(batch_size / median, 3)})
    return rows


def check(name: str, args: argparse.Namespace, deadline: float) -> dict[str, Any]:
    """Build, measure and free one model; its record (an error is recorded, not raised)."""
    import gc

    import torch

    record: dict[str, Any] = {"model": name}
    if time.monotonic() > deadline:
        return {**record, "skipped": "deadline passed before the build"}
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    module = None
    try:
        module, batch = build(name, args.device, args.tiny)
        record.update(build_s=round(time.perf_counter() - start, 2), dtype=str(next(module.parameters()).dtype),
                      parameters=sum(p.numel() for p in module.parameters()),
                      prompt_tokens=int(batch["input_ids"].shape[1]))
        record["rows"] = measure(name, module, batch, args, deadline)
    except Exception as err:  # noqa: BLE001 - out of memory or a library error: record it, go on
        record["error"] = f"{type(err).__name__}: {err}"
    finally:
        del module
        gc.collect()
        if cuda:
            record["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            torch.cuda.empty_cache()
    return record


def markdown(results: dict[str, Any]) -> str:
    """The tables of vlm-results.json."""
    lines = [f"# VLM device check ({results['device_name']}, {'tiny configs' if results['tiny'] else 'real sizes'}, "
             "random weights: timing only)", "",
             "| model | batch | setting | median s | passes | tokens/s | images/s |", "|---|---|---|---|---|---|---|"]
    for model in results["models"]:
        if "rows" not in model:
            lines.append(f"| {model['model']} | | {model.get('error') or model.get('skipped')} | | | | |")
            continue
        for r in model["rows"]:
            setting = f"steps {r['max_denoising_steps']}" if "max_denoising_steps" in r else f"length {r['length']}"
            if "skipped" in r:
                lines.append(f"| {r['model']} | {r['batch_size']} | {setting} | skipped ({r['skipped']}) | | | |")
            else:
                lines.append(f"| {r['model']} | {r['batch_size']} | {setting} | {r['median_s']} | {r['network_passes']} "
                             f"| {r['tokens_per_s']} | {r['images_per_s']} |")
    return "\n".join(lines) + "\n"


def write(out: Path, results: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "vlm-results.json").write_text(json.dumps(results, indent=1))
    (out / "vlm-device-check.md").write_text(markdown(results))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench device-check --vlm", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/device-check"))
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--tiny", action="store_true", help="tiny test configurations, on a CPU in seconds")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma list among {', '.join(MODELS)}")
    parser.add_argument("--steps", default="8,16,32,48", help="DiffusionGemma's fixed denoising steps")
    parser.add_argument("--lengths", default="8,16,32", help="Gemma 4's forced generated lengths")
    parser.add_argument("--batch", type=int, default=8, help="batch size of the throughput measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--deadline", type=float, default=420.0, help="seconds from the start; later work is skipped")
    args = parser.parse_args(argv)
    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here (use --tiny --device cpu)")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"--models: {unknown} unknown; accepted: {', '.join(MODELS)}")
    args.steps = [int(s) for s in args.steps.split(",")]
    args.lengths = [int(n) for n in args.lengths.split(",")]
    deadline = time.monotonic() + args.deadline
    import transformers

    results: dict[str, Any] = {
        "tiny": args.tiny, "device": args.device, "torch": torch.__version__, "transformers": transformers.__version__,
        "device_name": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
        "repeats": args.repeats, "deadline_s": args.deadline, "models": []}
    for name in models:
        results["models"].append(check(name, args, deadline))
        write(args.out, results)  # after every model: a run cut short keeps what it measured
        print(markdown(results).splitlines()[-1], flush=True)
    print(f"wrote {args.out / 'vlm-results.json'} and {args.out / 'vlm-device-check.md'}")
    return 1 if any("error" in m for m in results["models"]) else 0
