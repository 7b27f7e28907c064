"""A word-level caption tokenizer trained on the training captions (tokenizers library).

From-scratch captioners use it: word-level vocabularies of a few thousand words are the captioning
convention (words seen at least `min_frequency` times; the rest map to [UNK]).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import torch

SPECIALS = ("[PAD]", "[BOS]", "[EOS]", "[UNK]")
PAD, BOS, EOS, UNK = range(4)


def normalise_caption(text: str, max_words: int | None = None) -> str:
    """Lower-case, collapse whitespace, drop the final full stop; optionally cut to `max_words`."""
    words = re.sub(r"\s+", " ", text.lower()).strip().rstrip(" .").split(" ")
    if max_words is not None:
        words = words[:max_words]
    return " ".join(w for w in words if w)


class CaptionTokenizer:
    """Word-level tokenizer with [PAD]=0, [BOS]=1, [EOS]=2, [UNK]=3."""

    def __init__(self, tokenizer):
        self._tok = tokenizer

    @classmethod
    def train(cls, captions: Iterable[str], vocab_size: int = 10000, min_frequency: int = 1):
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

        tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
        tok.normalizer = normalizers.Lowercase()
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.WordLevelTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIALS)
        )
        tok.train_from_iterator(captions, trainer=trainer)
        return cls(tok)

    @classmethod
    def load(cls, path: Path) -> CaptionTokenizer:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)))

    def save(self, path: Path) -> None:
        self._tok.save(str(path))

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def encode(self, captions: list[str], max_tokens: int) -> torch.Tensor:
        """[BOS] w1 .. wn [EOS] [PAD].. as a (batch, max_tokens) tensor; long captions are cut."""
        out = torch.full((len(captions), max_tokens), PAD, dtype=torch.long)
        for i, enc in enumerate(self._tok.encode_batch(captions)):
            ids = [BOS, *enc.ids[: max_tokens - 2], EOS]
            out[i, : len(ids)] = torch.tensor(ids)
        return out

    def decode(self, ids: Iterable[int]) -> str:
        words = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i in (PAD, BOS):
                continue
            words.append(self._tok.id_to_token(i))
        return " ".join(words)
