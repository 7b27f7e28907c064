"""The text latent space: a BERT split in two (frozen lower half = encoder, upper half + LM head = decoder).

x0 for a caption is the output of the lower `split` layers (max_tokens x width), normalised per
dimension with a mean and std measured on the training captions, and with every [CLS]/[SEP]/[PAD]
position replaced by one fixed vector, the latent of "." in "[CLS] . [SEP]" (LaDiC's length
regularisation: no length predictor, the model writes "." where there is no word, and the CE target
there is the id of "."). Decoding de-normalises a predicted x0, runs the decoder and takes the argmax.

Decoders: `paper` = upper BERT layers + LM head; `lm_head` = the LM head alone on the de-normalised
latent (what the released code actually runs: its loop over the upper layers never executes).
`lm_vocab="train"` restricts the head to the ids seen in the training captions (a CPU-size option).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from transformers import BertConfig, BertModel
from transformers.models.bert.modeling_bert import BertLMPredictionHead, BertPredictionHeadTransform


class LMHead(nn.Module):
    """BERT's prediction head (dense, GELU, LayerNorm, vocabulary projection) over a subset of ids."""

    def __init__(self, config: BertConfig, vocab_ids: torch.Tensor):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, len(vocab_ids))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(hidden))


class SplitBertLatent(nn.Module):
    """Encoder (frozen) and decoder of the split-BERT latent space, plus the latent statistics.

    Args:
        config: the full BERT's config (all layers).
        split: layers in the encoder; x0 is their output.
        decoder: "paper" (upper layers + LM head) or "lm_head".
        vocab_ids: BERT ids the LM head predicts (all of them, or those of the training captions).
        special_ids: (cls, sep, pad) ids, mapped to the filler; dot_id: the filler's id (".");
            unk_id: the target of words outside `vocab_ids` (unseen in the training captions).
        bert: pretrained weights to start from (None: random init from `config`).
        mlm_head: a pretrained BertLMPredictionHead to initialise the LM head from (rows of vocab_ids).
        train_decoder_layers: whether the paper decoder's BERT layers are fine-tuned.
    """

    def __init__(self, config: BertConfig, split: int, decoder: str, vocab_ids: torch.Tensor,
                 special_ids: tuple[int, int, int], dot_id: int, unk_id: int, bert: BertModel | None = None,
                 mlm_head: BertLMPredictionHead | None = None, train_decoder_layers: bool = True):
        super().__init__()
        bert = bert if bert is not None else BertModel(copy.deepcopy(config), add_pooling_layer=False)
        layers = bert.encoder.layer
        self.upper = nn.ModuleList(layers[split:] if decoder == "paper" else [])
        bert.encoder.layer = nn.ModuleList(layers[:split])  # the encoder stops at the split
        bert.config = copy.deepcopy(bert.config)  # never alter the caller's config (saved with the model)
        bert.config.num_hidden_layers = split
        self.encoder = bert
        self.encoder.requires_grad_(False)
        self.encoder.eval()  # frozen: dropout off from the start (a fresh BertModel is in train mode)
        self.upper.requires_grad_(train_decoder_layers)
        self.train_decoder_layers = train_decoder_layers
        self.head = LMHead(config, vocab_ids)
        self._init_head(vocab_ids, mlm_head)
        width, vocab = config.hidden_size, config.vocab_size
        self.register_buffer("vocab_ids", vocab_ids.clone().long())
        fallback = unk_id if bool((vocab_ids == unk_id).any()) else dot_id
        index = torch.full((vocab,), int((vocab_ids == fallback).nonzero()[0, 0]), dtype=torch.long)
        index[vocab_ids] = torch.arange(len(vocab_ids))  # ids outside the head's vocabulary -> [UNK]
        self.register_buffer("id_to_index", index)
        self.register_buffer("special_ids", torch.tensor(special_ids, dtype=torch.long))
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("std", torch.ones(width))
        self.register_buffer("filler", torch.zeros(width))
        self.dot_id = dot_id
        self.refresh_filler()

    @property
    def width(self) -> int:
        return self.mean.numel()

    @torch.no_grad()
    def _init_head(self, vocab_ids: torch.Tensor, mlm_head: BertLMPredictionHead | None) -> None:
        if mlm_head is not None:
            self.head.transform.load_state_dict(mlm_head.transform.state_dict())
            self.head.decoder.weight.copy_(mlm_head.decoder.weight[vocab_ids])
            bias = mlm_head.decoder.bias if mlm_head.decoder.bias is not None else mlm_head.bias
            self.head.decoder.bias.copy_(bias[vocab_ids])
        else:
            # No pretrained head (MiniLM ships none): an identity transform and the tied input
            # embeddings. The encoder's output stays close to its input embeddings, so this head
            # decodes clean MiniLM latents almost perfectly before any training (random: ~1%).
            self.head.transform.dense.weight.copy_(torch.eye(self.head.transform.dense.in_features))
            self.head.transform.dense.bias.zero_()
            self.head.decoder.weight.copy_(self.encoder.embeddings.word_embeddings.weight[vocab_ids])
            self.head.decoder.bias.zero_()

    def train(self, mode: bool = True) -> SplitBertLatent:
        super().train(mode)
        self.encoder.eval()  # frozen: its dropout must stay off, or x0 would be noisy
        if not self.train_decoder_layers:
            self.upper.eval()
        return self

    # -- encoder side -----------------------------------------------------------------------------
    @torch.no_grad()
    def hidden(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Raw encoder output (batch, tokens, width) with the special positions set to the filler."""
        # Positions past the longest caption are padding, overwritten by the filler below and masked
        # for the others: encoding only up to the batch's longest caption gives the same result.
        self.encoder.eval()  # never a noisy x0, whatever mode the caller left the module in
        length = max(1, int(mask.sum(1).max()))
        h = self.encoder(input_ids=ids[:, :length], attention_mask=mask[:, :length]).last_hidden_state
        h = torch.cat([h, h.new_zeros(h.shape[0], ids.shape[1] - length, h.shape[2])], dim=1)
        special = torch.isin(ids, self.special_ids).unsqueeze(-1)
        return torch.where(special, self.filler.to(h.dtype), h)

    @torch.no_grad()
    def encode(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Normalised x0 of token ids."""
        return self.normalise(self.hidden(ids, mask))

    def normalise(self, hidden: torch.Tensor) -> torch.Tensor:
        return (hidden - self.mean) / self.std

    @torch.no_grad()
    def refresh_filler(self) -> None:
        """The latent of "." in "[CLS] . [SEP]"; depends only on the frozen encoder."""
        cls_id, sep_id, _ = self.special_ids.tolist()
        ids = torch.tensor([[cls_id, self.dot_id, sep_id]], device=self.mean.device)
        self.encoder.eval()
        self.filler.copy_(self.encoder(input_ids=ids, attention_mask=torch.ones_like(ids))
                          .last_hidden_state[0, 1])

    @torch.no_grad()
    def fit_statistics(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Per-dimension mean/std over (caption x position) of the latent the diffuser will see.

        Statistics include the filler positions, since x0 contains them; float64 sums keep them exact
        over large training sets.
        """
        total = torch.zeros(self.width, dtype=torch.float64, device=self.mean.device)
        squares = torch.zeros_like(total)
        count = 0
        for ids, mask in batches:
            h = self.hidden(ids.to(self.mean.device), mask.to(self.mean.device)).double()
            total += h.sum(dim=(0, 1))
            squares += (h * h).sum(dim=(0, 1))
            count += h.shape[0] * h.shape[1]
        if count == 0:
            raise ValueError("no captions to compute the latent statistics from")
        mean = total / count
        var = (squares / count - mean * mean).clamp_min(1e-10)
        self.mean.copy_(mean.float())
        self.std.copy_(var.sqrt().float())

    def targets(self, ids: torch.Tensor) -> torch.Tensor:
        """CE targets: the head's index of each id, with [CLS]/[SEP]/[PAD] -> "."."""
        ids = torch.where(torch.isin(ids, self.special_ids), torch.full_like(ids, self.dot_id), ids)
        return self.id_to_index[ids]

    # -- decoder side -----------------------------------------------------------------------------
    def logits(self, x0: torch.Tensor) -> torch.Tensor:
        """LM-head logits over `vocab_ids` for a (normalised) predicted x0."""
        h = x0 * self.std + self.mean
        for layer in self.upper:  # empty for decoder="lm_head"
            h = layer(h, attention_mask=None)  # every position holds a token or the filler: no mask
            h = h[0] if isinstance(h, tuple) else h
        return self.head(h)

    def to_ids(self, logits: torch.Tensor) -> torch.Tensor:
        """Argmax over the head's vocabulary, as BERT ids."""
        return self.vocab_ids[logits.argmax(-1)]

    def confidence(self, x0: torch.Tensor) -> torch.Tensor:
        """Each position's max softmax probability (Back&Refine's confidence)."""
        return self.logits(x0).float().softmax(-1).amax(-1)


def head_vocabulary(ids: torch.Tensor | None, vocab_size: int, keep: Iterable[int],
                    drop: Iterable[int]) -> torch.Tensor:
    """Sorted ids the LM head predicts: all (ids None), or those in `ids` minus `drop` (the specials,
    never a target) plus `keep` (".", [UNK])."""
    if ids is None:
        return torch.arange(vocab_size)
    chosen = (set(torch.unique(ids).tolist()) - set(drop)) | set(keep)
    return torch.tensor(sorted(chosen), dtype=torch.long)


class LatentCache:
    """x0 of training batches through a cache of the frozen encoder's outputs, keyed by token ids.

    The encoder is frozen, so a caption's latent never changes: on small datasets (shapes) this saves
    re-encoding every caption every epoch. Entries are kept in float16, real tokens only, for up to
    `capacity` captions; a miss is rounded the same way, so x0 never depends on the cache.
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.entries: dict[bytes, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def x0(self, latent: SplitBertLatent, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Normalised x0 of a batch (as `latent.encode`, with the hidden states rounded to float16)."""
        lengths = mask.sum(1).tolist()
        keys = [bytes(row) for row in ids.to(torch.int32).cpu().numpy()]
        missing = [i for i, key in enumerate(keys) if key not in self.entries]
        fresh = latent.hidden(ids[missing], mask[missing]) if missing else None
        rows = []
        for i, key in enumerate(keys):
            if key in self.entries:
                rows.append(self.entries[key].to(ids.device, latent.mean.dtype))
                continue
            h = fresh[missing.index(i)][: lengths[i]].half()  # type: ignore[index]
            if len(self.entries) < self.capacity:
                self.entries[key] = h.cpu()
            rows.append(h.to(latent.mean.dtype))
        full = pad_sequence(rows, batch_first=True)
        full = torch.cat([full, full.new_zeros(len(rows), ids.shape[1] - full.shape[1], full.shape[2])], 1)
        padding = (torch.arange(ids.shape[1], device=ids.device)[None] >= mask.sum(1, keepdim=True))
        return latent.normalise(torch.where(padding.unsqueeze(-1), latent.filler.to(full.dtype), full))
