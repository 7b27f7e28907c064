"""Captions <-> the model's token indices, on LaDiC's caption codec (models.ladic.tokens).

A caption is L tokens: its word pieces, [SEP] (the end), then [PAD]s; the end and the padding are
ordinary tokens the model predicts (no length predictor). LaDiC's leading [CLS] is dropped: it would
be the same at every position 0 and cost a position. The model's vocabulary is a list of tokenizer
ids (all of them, or those of the training captions for the CPU-sized variants, as LaDiC's
lm_vocab="train") and [MASK] is one index past them; ids outside the list map to [UNK].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from models.ladic.tokens import CaptionCodec


class Vocabulary:
    """Tokenizer ids <-> model indices, and captions <-> (batch, L) index tensors."""

    def __init__(self, codec: CaptionCodec, ids: Sequence[int], length: int, max_words: int | None = None):
        self.codec, self.length, self.max_words = codec, length, max_words
        required = {codec.sep_id, codec.pad_id, codec.unk_id}
        self.ids = sorted(set(int(i) for i in ids) | required)
        self.index = {tok: i for i, tok in enumerate(self.ids)}
        self.sep, self.pad, self.unk = (self.index[codec.sep_id], self.index[codec.pad_id],
                                        self.index[codec.unk_id])
        self.mask = len(self.ids)  # [MASK]: an input only, never predicted
        self._lookup = torch.full((max(codec.vocab_size, self.ids[-1] + 1),), self.unk, dtype=torch.long)
        self._lookup[torch.tensor(self.ids)] = torch.arange(len(self.ids))

    @classmethod
    def fit(cls, codec: CaptionCodec, captions: list[str] | None, length: int,
            max_words: int | None = None) -> Vocabulary:
        """All of the codec's ids (captions None), or those the captions use."""
        if captions is None:
            return cls(codec, range(codec.vocab_size), length, max_words)
        ids = cls(codec, [], length, max_words)._codec_ids(captions)
        return cls(codec, torch.unique(ids).tolist(), length, max_words)

    @property
    def size(self) -> int:
        """Predicted tokens (the output classes); the input embedding has one more row, [MASK]."""
        return len(self.ids)

    def _codec_ids(self, captions: list[str]) -> torch.Tensor:
        ids, _ = self.codec.encode(captions, self.length + 1, self.max_words)  # [CLS] ... [SEP] [PAD]..
        return ids[:, 1:]

    def encode(self, captions: list[str]) -> torch.Tensor:
        """(batch, L) model indices; long captions keep their first L - 1 pieces and [SEP]."""
        return self._lookup[self._codec_ids(captions)]

    def piece_ids(self, text: str) -> list[int]:
        """Model indices of a text's word pieces ([UNK] for pieces outside the vocabulary)."""
        pieces = self.codec.tok.encode(text, add_special_tokens=False).ids
        return [self.index.get(p, self.unk) for p in pieces]

    def words(self, row: Sequence[int]) -> list[tuple[str, list[int]]]:
        """The caption's words before the first [SEP], each with the positions of its pieces.

        [PAD] and [MASK] positions are skipped; a WordPiece continuation ("##...") joins the previous
        word. Words are detokenized text, possibly punctuation (":"), as the tokenizer decodes them.
        """
        out: list[tuple[str, list[int]]] = []
        for position, index in enumerate(int(i) for i in row):
            if index == self.sep:
                break
            if index in (self.pad, self.mask):
                continue
            piece = self.codec.tok.id_to_token(self.ids[index])
            if index == self.unk:
                piece = ""  # decoded text drops [UNK] (skip_special_tokens)
            if piece.startswith("##") and out:
                text, positions = out[-1]
                out[-1] = (text + piece[2:], positions + [position])
            else:
                out.append((piece, [position]))
        return [(text, positions) for text, positions in out if text]

    def decode_raw(self, row: Sequence[int]) -> str:
        """The caption as produced: the pieces before [SEP], detokenized, nothing removed."""
        return " ".join(text for text, _ in self.words(row))
