"""What every autoregressive captioner here shares: its probes, built on a forced-prefix continuation.

A subclass implements `continue_from(pixel_values, prefixes, **decoding)` (greedy captions that start
with the given forced words) and `teacher_forced_words`; this mixin turns them into the harness's
probes (bench/api.py): injection (force the words before k and the wrong word, then continue greedily),
the greedy decoding the probe and its baseline share, raw captions (autoregressive decoding has no
de-duplication step: raw = caption), and a forced generated length (min = max new tokens).

Sampling (diversity): every subclass funnels decoding through transformers' `module.generate`, so
`sample_captions` runs the model's own `caption` (prompt, lengths, post-processing unchanged) with only
the search replaced: nucleus sampling (top-p 0.9, temperature 1, no top-k cut, k sequences per image;
`temperature` and `top_p` may be given, for the diversity phase's sweep) or the top k beams of a k-beam
search, the deterministic baseline.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.api import (
    PROBE_FORCED_LENGTH,
    PROBE_INJECTION,
    PROBE_RAW,
    PROBE_SAMPLING,
    PROBE_TEACHER_FORCING,
    Knob,
)

AUTOREGRESSIVE_PROBES = frozenset({PROBE_RAW, PROBE_INJECTION, PROBE_TEACHER_FORCING, PROBE_FORCED_LENGTH,
                                   PROBE_SAMPLING})
#: `generate` settings of each sampling method, for k captions per image (recorded in diversity.json).
SAMPLING = {
    "nucleus": lambda k: {"do_sample": True, "top_p": 0.9, "top_k": 0, "temperature": 1.0, "num_beams": 1,
                          "num_return_sequences": k},
    "beams": lambda k: {"do_sample": False, "num_beams": k, "num_return_sequences": k},
}


@contextmanager
def generate_overridden(module: Any, settings: dict[str, Any]) -> Iterator[None]:
    """`module.generate` with `settings` overriding its callers' keyword arguments, for the duration."""
    plain = module.generate
    had_own = "generate" in vars(module)

    def generate(*args: Any, **kwargs: Any) -> Any:
        if settings.get("num_beams") == 1:
            kwargs.pop("length_penalty", None)  # means nothing without beams (transformers warns)
        return plain(*args, **{**kwargs, **settings})

    module.generate = generate
    try:
        yield
    finally:
        if had_own:
            module.generate = plain
        else:
            del module.generate


def beam_knob(sweep: tuple[int, ...] = (1, 3, 5)) -> Knob:
    return Knob("num_beams", int, None, sweep=sweep, cost=True, label="beam size",
                help="beam search width (1: greedy)")


def length_knobs() -> tuple[Knob, ...]:
    return (Knob("max_new_tokens", int, None, help="at most this many generated tokens"),
            Knob("min_new_tokens", int, None, help="at least this many generated tokens"))


class ForcedPrefixProbes:
    """Mixin for autoregressive captioners that implement `continue_from`."""

    paradigm = "autoregressive"
    sampling_methods = tuple(SAMPLING)
    #: the forced word is part of the prefix: it cannot be removed, so its survival is not measured.
    survival_by_construction = (None,)

    def probe_decoding(self, decoding: dict[str, Any]) -> dict[str, Any]:
        # Injection continues greedily, so its uninjected baseline must be greedy too.
        return {**decoding, "num_beams": 1}

    def caption_raw(self, pixel_values, **decoding: Any) -> list[str]:
        return self.caption(pixel_values, **decoding)  # type: ignore[attr-defined]

    def caption_with_injection(self, pixel_values, captions: list[str], position: int, words: list[str],
                               level: float | None = None, **decoding: Any) -> list[str]:
        from bench.metrics.errprop import words as split_words

        prefixes = []
        for caption, word in zip(captions, words, strict=True):
            if len(split_words(caption)) <= position:
                raise ValueError(f"caption {caption!r} has no word {position}")
            prefixes.append(self.forced_prefix(caption, position, word))
        return self.continue_from(pixel_values, prefixes, **self.probe_decoding(decoding))  # type: ignore[attr-defined]

    def forced_prefix(self, caption: str, position: int, word: str) -> list[str] | str:
        """What `continue_from` forces to put `word` at word `position` of `caption`: by default its
        words before `position` and `word`. The captioners here return `text_prefix` instead (their
        captions carry punctuation between words), so that the forced path is the caption's own."""
        from bench.metrics.errprop import words as split_words

        return split_words(caption)[:position] + [word]


    def forced_length_decoding(self, tokens: int) -> dict[str, Any]:
        return {"min_new_tokens": tokens, "max_new_tokens": tokens}

    def sampling_settings(self, method: str, k: int) -> dict[str, Any]:
        """The `generate` settings `method` overrides (the diversity phase records them)."""
        if method not in SAMPLING:
            raise ValueError(f"sampling method {method!r} is not accepted; accepted: {', '.join(SAMPLING)}")
        return SAMPLING[method](k)

    def sample_captions(self, pixel_values, k: int, method: str, seed: int = 0, temperature: float = 1.0,
                        top_p: float | None = None, **decoding: Any) -> list[list[str]]:
        """k captions per image (image-major) by nucleus sampling (at `temperature`, and `top_p` when
        given, else 0.9) or as the top k beams (deterministic: no temperature or top-p); the sampling
        draws come from a generator seeded by `seed` (the global one is restored afterwards)."""
        import torch

        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        settings = with_temperature(self.sampling_settings(method, k), method, temperature, top_p)
        decoding = {name: v for name, v in decoding.items() if name != "num_beams"}  # the method's search
        devices = [pixel_values.device] if pixel_values.device.type == "cuda" else []
        module = self.module  # type: ignore[attr-defined]
        with torch.random.fork_rng(devices=devices), generate_overridden(module, settings):
            torch.manual_seed(seed)
            captions = self.caption(pixel_values, **decoding)  # type: ignore[attr-defined]
        if len(captions) != k * len(pixel_values):
            raise RuntimeError(f"{type(self).__name__}: expected {k} captions per image, got {len(captions)} "
                               f"for {len(pixel_values)} images")
        return [captions[i * k:(i + 1) * k] for i in range(len(pixel_values))]


def with_temperature(settings: dict[str, Any], method: str, temperature: float,
                     top_p: float | None) -> dict[str, Any]:
    """A sampling method's `generate` settings at `temperature` (and `top_p` when given); a deterministic
    method (beams) takes neither, and a value out of range is a ValueError naming it."""
    if not settings.get("do_sample"):
        if temperature != 1.0 or top_p is not None:
            raise ValueError(f"sampling method {method!r} is deterministic: it takes no temperature or top_p "
                             f"(got temperature={temperature}, top_p={top_p})")
        return dict(settings)
    if temperature <= 0 or (top_p is not None and not 0 < top_p <= 1):
        raise ValueError(f"temperature must be > 0 and top_p in (0, 1], got {temperature}, {top_p}")
    return {**settings, "temperature": float(temperature), **({"top_p": float(top_p)} if top_p is not None else {})}


def text_prefix(caption: str, position: int, word: str) -> str:
    """The caption's own text up to its word `position` (`bench.metrics.errprop.words` positions),
    then `word`: punctuation the model generated between earlier words ("a red circle, a blue") is
    forced too. Forcing the bare words ("a red circle a") takes another path than the caption did,
    so even the right word changed later words (blip-tiny on shapes, whose captions keep BLIP's
    commas: 2.55 words per control injection): the control measured the tokenisation, not the model."""
    from bench.metrics.errprop import WORD

    text = caption.lower()  # errprop.words lower-cases first: its spans are on this string
    spans = [m.span() for m in WORD.finditer(text)]
    if position >= len(spans):
        raise ValueError(f"caption {caption!r} has no word {position}")
    return text[: spans[position][0]] + word
