"""DiffusionGemma as a zero-shot diffusion captioner: block diffusion over a token canvas.

Model: google/diffusiongemma-26B-A4B-it, transformers' `DiffusionGemmaForBlockDiffusion` (Apache-2.0
implementation; weights under Gemma's terms). Paradigm label: "diffusion (block)", its own group in the
comparisons, paired with every autoregressive model (compare.py pairs across paradigms); the vlm suite's
`verdict_models` restricts the verdict to this model and its autoregressive twin Gemma 4 26B-A4B.

Generation (transformers' `generate`, nothing re-implemented): the prompt (chat template, image tokens,
instruction: models/vlm/base.py) is prefilled into a KV cache by the causal encoder; a canvas of
`canvas_length` random tokens (uniform noise, no mask token) is denoised by the bidirectional decoder;
each step samples every position at the step's temperature (linear schedule from `t_max` at the first
step to `t_min` at the last), accepts the lowest-entropy positions within `entropy_bound` and re-noises
the rest; adaptive stopping ends the canvas once the argmax canvas is unchanged for
`stability_threshold` steps and the mean entropy is under `confidence_threshold`, else after
`max_denoising_steps`. A caption fits in one canvas (`max_new_tokens` = one canvas by default).
Defaults are transformers' generation defaults for the model (48 steps, t 0.8 -> 0.4, entropy bound 0.1,
stability 1, confidence 0.005). `adaptive_stopping: false` turns the criterion off (every canvas takes
`max_denoising_steps` steps: the latency sweep and `bench device-check`).

Cost (`Generation`): network_evals per caption = its own denoising steps (decoder passes; a row that
stopped early is not charged for its batch mates' steps, as transformers counts them) + the encoder
passes (the prompt's prefill, and one per finished canvas that another canvas follows). The decoder
passes per row come from transformers' `tokens_per_forward` (valid tokens / decoder passes).

Probes:
  - `raw`: the argmax canvas decoded up to the end token, before the first-sentence cut.
  - `sampling` ("seeds"): k captions per image from k seeds of the canvas noise and the sampler's draws;
    `temperature` scales both ends of the temperature schedule (1: the model's schedule).
  - Not declared: `injection`. transformers' sampler accepts a starting canvas (`decoder_input_ids`) and
    logits processors, but exposes no per-step hook on the canvas, and a uniform-state canvas has no
    word alignment before it is finished (every position not yet accepted holds a random token), so
    "overwrite word k at step s and continue with the same noise" is not defined without re-implementing
    the denoising loop; that is left undone rather than approximated. `teacher_forcing` (an
    autoregressive notion) and `forced_length` (the canvas has a fixed length) are not declared either.
"""

from __future__ import annotations

from typing import Any

import torch

from bench.api import PROBE_RAW, PROBE_SAMPLING, Generation, Knob, VariantInfo
from models.counting import counted_calls
from models.vlm.base import VlmCaptioner, VlmConfig

GEMMA4_PROCESSOR = "models.vlm.processors:ImageOnlyGemma4Processor"
#: transformers' generation defaults for DiffusionGemma (DiffusionGemmaGenerationConfig).
DEFAULTS = {"max_denoising_steps": 48, "t_min": 0.4, "t_max": 0.8, "entropy_bound": 0.1,
            "stability_threshold": 1, "confidence_threshold": 0.005}


class DiffusionGemmaCaptioner(VlmCaptioner):
    """DiffusionGemma (block diffusion) captioner; see the module docstring."""

    paradigm = "diffusion (block)"
    trainable = True  # a learned model (compared across paradigms), run zero-shot: no train phase here
    knobs = (
        Knob("max_denoising_steps", int, DEFAULTS["max_denoising_steps"], sweep=(4, 8, 16, 32, 48), cost=True,
             label="max denoising steps", help="upper bound on denoising steps per canvas"),
        Knob("adaptive_stopping", bool, True, help="stop a canvas once stable and confident (off: every step runs)"),
        Knob("stability_threshold", int, DEFAULTS["stability_threshold"],
             help="steps the argmax canvas must stay unchanged before stopping"),
        Knob("confidence_threshold", float, DEFAULTS["confidence_threshold"],
             help="mean token entropy under which a stable canvas stops"),
        Knob("t_max", float, DEFAULTS["t_max"], help="temperature at the first denoising step"),
        Knob("t_min", float, DEFAULTS["t_min"], help="temperature at the last denoising step"),
        Knob("entropy_bound", float, DEFAULTS["entropy_bound"], help="entropy budget of the positions accepted per step"),
        Knob("canvas_length", int, None, help="tokens per canvas (default: the checkpoint's, 256)"),
        Knob("max_new_tokens", int, None, help="generated tokens at most (default: one canvas)"),
    )
    probes = frozenset({PROBE_RAW, PROBE_SAMPLING})
    sampling_methods = ("seeds",)
    tiny_variant = "vlm-diffusiongemma-test"

    def _settings(self, decoding: dict[str, Any], temperature: float = 1.0) -> tuple[dict[str, Any], int]:
        """(generate keyword arguments, canvas length) of the decoding knobs."""
        s = {**DEFAULTS, **{k: v for k, v in decoding.items() if v is not None}}
        from transformers.models.diffusion_gemma.generation_diffusion_gemma import EntropyBoundSamplerConfig

        canvas = int(s.get("canvas_length") or self.module.config.canvas_length)
        adaptive = s.get("adaptive_stopping", True)
        kwargs = {"max_denoising_steps": int(s["max_denoising_steps"]),
                  "t_min": float(s["t_min"]) * temperature, "t_max": float(s["t_max"]) * temperature,
                  "sampler_config": EntropyBoundSamplerConfig(entropy_bound=float(s["entropy_bound"])),
                  "stability_threshold": int(s["stability_threshold"]) if adaptive else None,
                  "confidence_threshold": float(s["confidence_threshold"]) if adaptive else None,
                  "max_new_tokens": int(s.get("max_new_tokens") or canvas)}
        return kwargs, canvas

    @torch.no_grad()
    def _run(self, pixel_values: torch.Tensor, temperature: float = 1.0, **decoding: Any) -> tuple[torch.Tensor, list[int]]:
        """(generated ids after the prompt, network evaluations per row)."""
        kwargs, canvas = self._settings(decoding, temperature)
        enc = self.model_inputs(pixel_values)
        config = self.module.config
        original = config.canvas_length
        config.canvas_length = canvas  # generate reads the canvas length from the model config
        try:
            with counted_calls(self.module.model.encoder) as encoder_passes, counted_calls(self.module.model.decoder) as steps:
                out = self.module.generate(**enc, **kwargs)
        finally:
            config.canvas_length = original
        ids = out.sequences[:, enc["input_ids"].shape[1]:]
        pad = self.module.generation_config.pad_token_id
        valid = (ids != pad).sum(-1) if pad is not None else torch.full((len(ids),), ids.shape[1])
        per_row = []
        for n, tpf in zip(valid.tolist(), out.tokens_per_forward.tolist(), strict=True):
            # tokens_per_forward = valid tokens / this row's decoder passes; no valid token: the batch's count
            per_row.append(int(round(n / tpf)) if n and tpf else steps[0])
        return ids, [p + encoder_passes[0] for p in per_row]

    def generate(self, pixel_values: torch.Tensor, **decoding: Any) -> Generation:
        ids, evals = self._run(pixel_values, **decoding)
        return Generation([self.postprocess(t) for t in self.decode(ids)], evals, self.tokens_before_end(ids))

    def caption(self, pixel_values: torch.Tensor, **decoding: Any) -> list[str]:
        return self.generate(pixel_values, **decoding).captions

    def caption_raw(self, pixel_values: torch.Tensor, **decoding: Any) -> list[str]:
        """The argmax canvas decoded (up to the end token), before post-processing."""
        return self.decode(self._run(pixel_values, **decoding)[0])

    def sample_captions(self, pixel_values: torch.Tensor, k: int, method: str, seed: int = 0,
                        temperature: float = 1.0, **decoding: Any) -> list[list[str]]:
        """k captions per image, each from its own seed (seed, seed+1, ...) of the canvas noise and draws."""
        if method not in self.sampling_methods:
            raise ValueError(f"sampling method {method!r} is not accepted; accepted: {', '.join(self.sampling_methods)}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        devices = [pixel_values.device] if pixel_values.device.type == "cuda" else []
        draws = []
        with torch.random.fork_rng(devices=devices):
            for j in range(k):
                torch.manual_seed(seed + j)
                ids, _ = self._run(pixel_values, temperature=temperature, **decoding)
                draws.append([self.postprocess(t) for t in self.decode(ids)])
        return [[draws[j][i] for j in range(k)] for i in range(len(pixel_values))]

    def decode_cost(self, max_denoising_steps: int | None = None, max_new_tokens: int | None = None,
                    canvas_length: int | None = None, num_tokens: float | None = None, **knobs: Any) -> int:
        """Network evaluations per caption at most: (steps + 1 encoder pass) per canvas."""
        canvas = canvas_length or self.module.config.canvas_length
        canvases = -(-(max_new_tokens or canvas) // canvas)
        return canvases * ((max_denoising_steps or DEFAULTS["max_denoising_steps"]) + 1)

    def default_decoding(self) -> dict[str, Any]:
        return {}


def _dg(weights: str | None, checkpoint: str, **extra: Any) -> VlmConfig:
    return VlmConfig(weights=weights, checkpoint=checkpoint, model_class="DiffusionGemmaForBlockDiffusion",
                     processor=GEMMA4_PROCESSOR, tiny="diffusion_gemma", **extra)


DiffusionGemmaCaptioner.variants = {
    "vlm-diffusiongemma-26b-a4b": _dg("google/diffusiongemma-26B-A4B-it",
                                      "instruction-tuned (DiffusionGemma 26B-A4B-it)", dtype="bfloat16"),
    "vlm-diffusiongemma-test": _dg(None, "random weights, tiny DiffusionGemma configuration (tests)", image_size=32),
}
DiffusionGemmaCaptioner.info = {
    name: VariantInfo(pretraining="released checkpoint" if c.weights else "none", description=c.checkpoint)
    for name, c in DiffusionGemmaCaptioner.variants.items()
}
