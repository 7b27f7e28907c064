"""LaDiC's error-propagation probes (bench/metrics/errprop.py; the choices are in the package
docstring, models/ladic/captioner.py): raw output, and a wrong word's latent injected part-way
through sampling with the noise draws of the uninjected run.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch

from models.ladic.diffusion import Injection

PROBE_CACHE = 8  # uninjected runs kept (batches x settings the phase cycles through)


class LaDiCProbes:
    """Mixin of LaDiCCaptioner: `probe_decoding`, `caption_raw`, `caption_with_injection`,
    `sample_captions`."""

    def sample_captions(self, pixel_values: torch.Tensor, k: int, method: str, seed: int = 0,
                        temperature: float = 1.0, **decoding: Any) -> list[list[str]]:
        """Probe `sampling`: k captions per image from noise seeds seed, seed+1, ..., seed+k-1, every
        noise draw scaled by `temperature` (the diffusion sampler's temperature: see `caption`)."""
        if method != "seeds":
            raise ValueError(f"sampling method {method!r} is not accepted; accepted: 'seeds'")
        decoding = {name: v for name, v in decoding.items() if name not in ("seed", "temperature")}
        runs = [self.caption(pixel_values, seed=seed + j, temperature=temperature, **decoding) for j in range(k)]
        return [list(row) for row in zip(*runs, strict=True)]

    def probe_decoding(self, decoding: dict[str, Any]) -> dict[str, Any]:
        # One candidate is one noise trajectory to inject into: MBR's choice among several is not.
        return {**decoding, "mbr": 1}

    @torch.no_grad()
    def caption_raw(self, pixel_values: torch.Tensor, **decoding: Any) -> list[str]:
        """Argmax tokens as sampled, length fillers removed, before any de-duplication (MBR off)."""
        decoding = self.probe_decoding(decoding)
        steps, guidance, refine, _ = self._settings(decoding.get("steps"), decoding.get("guidance"),
                                                    decoding.get("back_and_refine"), 1)
        x0 = self.sample_latents(pixel_values, steps, guidance, refine, 1, decoding.get("seed", 0),
                                 decoding.get("mode", "optimized"))
        assert self.codec is not None
        return [self.codec.decode_raw(row) for row in self._ids(x0).tolist()]

    def injection_t(self, level: float | None) -> int:
        """The diffusion level of an injection `level` (fraction of generation done; None: middle)."""
        level = 0.5 if level is None else float(level)
        if not 0 < level < 1:
            raise ValueError(f"injection level must be a fraction in (0, 1), got {level}")
        return min(self.diffusion.T - 2, round((1 - level) * self.diffusion.T))

    @torch.no_grad()
    def caption_with_injection(self, pixel_values: torch.Tensor, captions: list[str], position: int,
                               words: list[str], level: float | None = None, **decoding: Any) -> list[str]:
        """Word `position` of each uninjected caption overwritten by `words[i]`'s latent part-way
        through sampling (package docstring); the same noise draws as the uninjected run, which is
        run up to the injection once per batch and settings and resumed from there per call."""
        decoding = self.probe_decoding(decoding)
        settings = self._settings(decoding.get("steps"), decoding.get("guidance"), decoding.get("back_and_refine"), 1)
        steps, guidance, refine, _ = settings
        seed, mode, t = decoding.get("seed", 0), decoding.get("mode", "optimized"), self.injection_t(level)
        ids, state = self._uninjected(pixel_values, (steps, guidance, refine, seed, mode, t))
        mask, values = self._injection_targets(ids, captions, position, words)
        x0 = self.sample_trace(pixel_values, steps, guidance, refine, 1, seed, mode, resume=state,
                               inject=Injection(t, mask, values)).x0
        assert self.codec is not None
        return [self.codec.decode(row) for row in self._ids(x0).tolist()]

    def _uninjected(self, pixel_values: torch.Tensor, key: tuple) -> tuple[torch.Tensor, Any]:
        """Argmax ids of the uninjected run and its state at the injection point; the last few
        batches' are kept, since the errprop phase injects several words into the same batches."""
        from models.seeding import image_seeds

        steps, guidance, refine, seed, mode, t = key
        weights = tuple(p._version for p in self.module.parameters())  # in-place updates bump these
        full = (tuple(image_seeds(pixel_values, seed)), pixel_values.dtype, key, id(self.module), weights)
        cache = self.__dict__.setdefault("_probe_cache", OrderedDict())
        if full not in cache:
            trace = self.sample_trace(pixel_values, steps, guidance, refine, 1, seed, mode, pause_at=t)
            cache[full] = (self._ids(trace.x0), trace.paused)
            while len(cache) > PROBE_CACHE:
                cache.popitem(last=False)
        cache.move_to_end(full)
        return cache[full]

    def _injection_targets(self, ids: torch.Tensor, captions: list[str], position: int,
                           words: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(mask, values): the token positions of word `position` in each sampled row, and there the
        latents of the wrong word (x0 of the caption with that word replaced, at the word's pieces)."""
        from bench.metrics.errprop import WORD
        from bench.metrics.errprop import words as split_words

        assert self.codec is not None
        tokens, latent = ids.shape[1], self.module.latent
        mask = torch.zeros(ids.shape, dtype=torch.bool, device=ids.device)
        values = torch.zeros(*ids.shape, latent.width, device=ids.device)
        for row, (caption, word) in enumerate(zip(captions, words, strict=True)):
            mapped = self.codec.word_positions(ids[row].tolist(), WORD)
            if [w for w, _ in mapped] != split_words(caption):
                raise ValueError(f"ladic: caption {caption!r} is not what this model samples for image {row} "
                                 f"with these settings ({' '.join(w for w, _ in mapped)!r})")
            if position >= len(mapped):
                raise ValueError(f"caption {caption!r} has no word {position}")
            original = split_words(caption)
            text = " ".join([*original[:position], word, *original[position + 1:]])
            enc, enc_mask = self.codec.encode([text], tokens)
            x0 = latent.encode(enc.to(ids.device), enc_mask.to(ids.device))[0]
            start = 1 + self._pieces(original[:position], tokens)  # after [CLS]
            count = max(1, self._pieces([*original[:position], word], tokens) + 1 - start)
            pieces = [p for p in range(start, start + count) if p < tokens - 1] or [min(start, tokens - 2)]
            positions = list(mapped[position][1])
            if not positions:
                raise ValueError(f"ladic: word {position} of {caption!r} owns no token")
            while len(positions) < len(pieces) and positions[-1] + 1 < tokens:
                positions.append(positions[-1] + 1)  # a longer wrong word takes the following positions
            for n, p in enumerate(positions):
                mask[row, p] = True
                values[row, p] = x0[pieces[min(n * len(pieces) // len(positions), len(pieces) - 1)]]
        return mask, values

    def _pieces(self, words: list[str], tokens: int) -> int:
        """How many tokens the words take in the codec's layout ([CLS] and [SEP] not counted)."""
        assert self.codec is not None
        return int(self.codec.encode([" ".join(words)], tokens)[1].sum()) - 2
