"""What every autoregressive captioner here shares: its probes, built on a forced-prefix continuation.

A subclass implements `continue_from(pixel_values, prefixes, **decoding)` (greedy captions that start
with the given forced words) and `teacher_forced_words`; this mixin turns them into the harness's
probes (bench/api.py): injection (force the words before k and the wrong word, then continue greedily),
the greedy decoding the probe and its baseline share, raw captions (autoregressive decoding has no
de-duplication step: raw = caption), and a forced generated length (min = max new tokens).
"""

from __future__ import annotations

from typing import Any

from bench.api import (
    PROBE_FORCED_LENGTH,
    PROBE_INJECTION,
    PROBE_RAW,
    PROBE_TEACHER_FORCING,
    Knob,
)

AUTOREGRESSIVE_PROBES = frozenset({PROBE_RAW, PROBE_INJECTION, PROBE_TEACHER_FORCING, PROBE_FORCED_LENGTH})


def beam_knob(sweep: tuple[int, ...] = (1, 3, 5)) -> Knob:
    return Knob("num_beams", int, None, sweep=sweep, cost=True, label="beam size",
                help="beam search width (1: greedy)")


def length_knobs() -> tuple[Knob, ...]:
    return (Knob("max_new_tokens", int, None, help="at most this many generated tokens"),
            Knob("min_new_tokens", int, None, help="at least this many generated tokens"))


class ForcedPrefixProbes:
    """Mixin for autoregressive captioners that implement `continue_from`."""

    paradigm = "autoregressive"

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
            original = split_words(caption)
            if len(original) <= position:
                raise ValueError(f"caption {caption!r} has no word {position}")
            prefixes.append(original[:position] + [word])
        return self.continue_from(pixel_values, prefixes, **self.probe_decoding(decoding))  # type: ignore[attr-defined]

    def forced_length_decoding(self, tokens: int) -> dict[str, Any]:
        return {"min_new_tokens": tokens, "max_new_tokens": tokens}
