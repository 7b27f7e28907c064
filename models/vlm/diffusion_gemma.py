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
  - `injection` at levels 0.25, 0.5, 0.75 (the fraction of `max_denoising_steps` done): the uninjected
    caption and the injected one are made with the same seed (`probe_decoding` sets `seed`, and a seeded
    caption is generated image by image, so its noise does not depend on the batch); at the denoising
    step the level names, a logits processor pins the canvas positions of word k (its tokens in the
    uninjected caption, mapped by character offsets as the autoregressive probes do) to the wrong word's
    tokens (probability one, so the entropy-bounded sampler accepts them), and denoising goes on freely:
    later steps may revise the word, as they may revise any accepted token. The same draws precede the
    injection step, so before it both runs are identical. Limits: word k's canvas positions are its
    tokens in the caption's own tokenisation counted from the canvas start, which is where they are
    when the caption is the canvas's first sentence with nothing trimmed before it (special tokens the
    model wrote among the words, dropped when decoding, would shift them); a wrong word with more or fewer tokens
    than the original is written from the original's first position on (the following positions are
    overwritten, or the remainder left to the model); a canvas that stops (adaptive stopping) before the
    injection step cannot be injected at that level: the probe refuses that image (ValueError, recorded
    by the errprop phase as a failure) rather than report an injection that never happened.
  - Not declared: `teacher_forcing` (an autoregressive notion) and `forced_length` (the canvas has a
    fixed length).
"""

from __future__ import annotations

from typing import Any

import torch

from bench.api import PROBE_INJECTION, PROBE_RAW, PROBE_SAMPLING, Generation, Knob, VariantInfo
from models.counting import counted_calls
from models.hf_captioner import word_pieces
from models.vlm.base import VlmCaptioner, VlmConfig

GEMMA4_PROCESSOR = "models.vlm.processors:ImageOnlyGemma4Processor"
#: transformers' generation defaults for DiffusionGemma (DiffusionGemmaGenerationConfig).
DEFAULTS = {"max_denoising_steps": 48, "t_min": 0.4, "t_max": 0.8, "entropy_bound": 0.1,
            "stability_threshold": 1, "confidence_threshold": 0.005}


class CanvasPin:
    """A logits processor for transformers' DiffusionGemma sampler: at the step whose counter is `at`
    (the sampler counts down from max_denoising_steps to 1), the canvas positions in `tokens` get all
    their probability on the given token; every other step and position is left alone."""

    def __init__(self, at: int, tokens: dict[int, int]):
        self.at, self.tokens, self.applied = at, tokens, False

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, cur_step: torch.Tensor) -> torch.Tensor:
        if int(cur_step) != self.at:
            return scores
        scores = scores.clone()
        for position, token in self.tokens.items():
            if position < scores.shape[1]:
                scores[:, position, :] = float("-inf")
                scores[:, position, token] = 0.0
        self.applied = True
        return scores


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
        Knob("seed", int, None, help="seed of the canvas noise and draws, per image (None: the global generator)"),
    )
    probes = frozenset({PROBE_RAW, PROBE_SAMPLING, PROBE_INJECTION})
    injection_levels = (0.25, 0.5, 0.75)
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
                  "max_new_tokens": int(s.get("max_new_tokens") or canvas),
                  # transformers reads max_length instead when max_new_tokens equals its default, 256 (one
                  # full canvas): unset it, so a checkpoint's max_length cannot cut the canvas short
                  "max_length": None}
        return kwargs, canvas

    @torch.no_grad()
    def _run(self, pixel_values: torch.Tensor, temperature: float = 1.0, pins: list[Any] | None = None,
             **decoding: Any) -> tuple[torch.Tensor, list[int]]:
        """(generated ids after the prompt, network evaluations per row). With `seed`, image by image,
        each from that seed (its noise then does not depend on the batch); `pins`: one logits processor
        (or None) per image, which needs `seed`."""
        seed = decoding.pop("seed", None)
        if seed is None:
            if pins is not None:
                raise ValueError("pinning canvas tokens needs a seed (the injected and uninjected runs share it)")
            return self._generate(pixel_values, temperature, None, **decoding)
        devices = [pixel_values.device] if pixel_values.device.type == "cuda" else []
        rows, evals = [], []
        with torch.random.fork_rng(devices=devices):
            for i in range(len(pixel_values)):
                torch.manual_seed(seed)
                ids, n = self._generate(pixel_values[i:i + 1], temperature, pins[i] if pins else None, **decoding)
                rows.append(ids[0])
                evals += n
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id or 0
        return torch.stack([torch.cat([r, r.new_full((width - len(r),), pad)]) for r in rows]), evals

    def _generate(self, pixel_values: torch.Tensor, temperature: float, pin: Any, **decoding: Any
                  ) -> tuple[torch.Tensor, list[int]]:
        from transformers import LogitsProcessorList

        kwargs, canvas = self._settings(decoding, temperature)
        if pin is not None:
            kwargs["logits_processor"] = LogitsProcessorList([pin])
        enc = self.model_inputs(pixel_values)
        config = self.module.config
        original = config.canvas_length
        config.canvas_length = canvas  # generate reads the canvas length from the model config
        try:
            # generate calls the model's forward directly (no hooks on it): count the decoder's calls
            with counted_calls(self.module.model.encoder) as encoder_passes, \
                    counted_calls(self.module.model.decoder) as steps:
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
        decoding = {k: v for k, v in decoding.items() if k != "seed"}  # each sample has its own seed
        devices = [pixel_values.device] if pixel_values.device.type == "cuda" else []
        draws = []
        with torch.random.fork_rng(devices=devices):
            for j in range(k):
                torch.manual_seed(seed + j)
                ids, _ = self._run(pixel_values, temperature=temperature, **decoding)
                draws.append([self.postprocess(t) for t in self.decode(ids)])
        return [[draws[j][i] for j in range(k)] for i in range(len(pixel_values))]

    def probe_decoding(self, decoding: dict[str, Any]) -> dict[str, Any]:
        """The injected and uninjected captions share a seed (0 unless the decoding names one)."""
        return {**decoding, "seed": decoding.get("seed") or 0}

    def caption_with_injection(self, pixel_values: torch.Tensor, captions: list[str], position: int,
                               words: list[str], level: float | None = None, **decoding: Any) -> list[str]:
        """Word `position` of each caption replaced by `words[i]` on the canvas at `level` of the denoising
        steps, then denoising goes on with the same seed (module docstring)."""
        from bench.metrics.errprop import words as split_words

        if level not in self.injection_levels:
            raise ValueError(f"level {level!r} is not an injection level; accepted: {self.injection_levels}")
        decoding = self.probe_decoding(decoding)
        total = int(decoding.get("max_denoising_steps") or DEFAULTS["max_denoising_steps"])
        step = min(total, max(1, round(level * total)))  # the denoising step (1 = first) the word is put in
        pins = []
        for caption, word in zip(captions, words, strict=True):
            original = split_words(caption)
            if len(original) <= position:
                raise ValueError(f"caption {caption!r} has no word {position}")
            _, pieces = word_pieces(self.tokenizer, caption)
            replaced = " ".join([*original[:position], word, *original[position + 1:]])
            ids, new_pieces = word_pieces(self.tokenizer, replaced)
            if not pieces[position] or not new_pieces[position]:
                raise ValueError(f"word {position} of {caption!r} or {word!r} has no tokens to put on the canvas")
            first = pieces[position][0]
            pins.append(CanvasPin(total - step + 1, {first + j: ids[t] for j, t in enumerate(new_pieces[position])}))
        out, _ = self._run(pixel_values, pins=pins, **decoding)
        missed = [n for n, pin in enumerate(pins) if not pin.applied]
        if missed:
            raise ValueError(f"image(s) {missed}: the canvas stopped before denoising step {step} of {total} "
                             f"(adaptive stopping), so nothing was injected at level {level}")
        return [self.postprocess(t) for t in self.decode(out)]

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
