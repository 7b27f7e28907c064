"""The masked diffusion captioner's configuration dataclass and its variants table.

The image encoders and vocabularies are LaDiC's (models/ladic/config.py), variant for variant, so a
comparison of mdm-X with ladic-X isolates the decoder: continuous latent diffusion against masked
(absorbing-state) discrete diffusion.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.ladic.config import ImageEncoderConfig


@dataclass
class MDMConfig(ImageEncoderConfig):
    # The image encoder fields are LaDiC's (ImageEncoderConfig; the encoders by import).
    pretrained: bool = True  # False: the BLIP architecture with random weights (latency, offline)
    # -- captions -------------------------------------------------------------------------------
    tokenizer: str = "wordpiece"  # wordpiece: bert-base-uncased's vocabulary | word: fitted on captions
    lm_vocab: str = "full"  # full: every id of the tokenizer | train: ids seen in the training captions
    max_tokens: int = 24  # L: every caption is L tokens (words, [SEP], [PAD]s), LaDiC's setting
    max_words: int = 30
    # -- denoising transformer ------------------------------------------------------------------
    width: int = 768
    layers: int = 12
    heads: int = 12
    ffn: int = 3072
    dropout: float = 0.1
    # -- forward process and training -----------------------------------------------------------
    eps: float = 1e-3  # t ~ U(eps, 1): the masking probability of a training sequence
    low_discrepancy: bool = True  # MDLM's stratified t over a batch (same expectation, less variance)
    cfg_drop_prob: float = 0.1  # image replaced by the learned null memory (classifier-free guidance)
    # -- decoding defaults (all overridable per caption() call) ---------------------------------
    steps: int = 24
    guidance: float = 0.0
    temperature: float = 0.0  # Gumbel noise scale on the logits (0: argmax)
    threshold: float = 0.0  # Fast-dLLM's confidence threshold (0: off, the step schedule applies)
    blocks: int = 1  # semi-autoregressive blocks (LLaDA), decoded left to right
    remasking: str = "low_confidence"  # low_confidence (LLaDA) | random (MDLM's ancestral sampler)

    def weights_sources(self) -> dict[str, str]:
        """role -> pretrained weights this config loads, for the job's identity (bench/plan.py): the
        frozen BLIP image encoder (the vocabulary is bert-base-uncased's, shipped by a pinned package)."""
        if self.pretrained and self.image_encoder == "blip":
            return {"image_encoder": self.image_source}
        return {}


#: which masked positions a sampling step commits (models/masked_diffusion/sampler.py)
REMASKING = ("low_confidence", "random")
CHOICES = {
    "image_encoder": ("blip", "conv"), "image_norm": ("clip", "half"),
    "tokenizer": ("wordpiece", "word"), "lm_vocab": ("full", "train"),
    "remasking": REMASKING,
}


def validate(cfg: MDMConfig) -> None:
    """Fail early, naming the field, on values no code path accepts."""
    for name, allowed in CHOICES.items():
        if getattr(cfg, name) not in allowed:
            raise ValueError(f"MDMConfig.{name} must be one of {allowed}, got {getattr(cfg, name)!r}")
    if cfg.max_tokens < 2:
        raise ValueError(f"MDMConfig.max_tokens must be >= 2 (a word and [SEP]), got {cfg.max_tokens}")
    if cfg.width % cfg.heads:
        raise ValueError(f"MDMConfig.width={cfg.width} is not divisible by heads={cfg.heads}")
    if not 0 < cfg.eps < 1:
        raise ValueError(f"MDMConfig.eps must be in (0, 1), got {cfg.eps}")
    if not 0 <= cfg.cfg_drop_prob < 1:
        raise ValueError(f"MDMConfig.cfg_drop_prob must be in [0, 1), got {cfg.cfg_drop_prob}")


VARIANTS: dict[str, MDMConfig] = {
    # ladic-base's image encoder (frozen BLIP ViT-B/16 at 224 px) and vocabulary (bert-base-uncased's
    # 30522 WordPiece ids); a 12-layer x 768 bidirectional transformer with cross-attention. Two
    # semi-autoregressive blocks, as mdm-mini: padded fixed-length targets make [SEP]/[PAD] the most
    # confident predictions, so one block commits the length first and captions come out short (the
    # package docstring has the measurement; `blocks` is a knob, 1 gives the plain schedule).
    "mdm-base": MDMConfig(blocks=2),
    # ladic-mini's conv encoder (64 px, 8x8 tokens of width 128) and vocabulary (MiniLM's, which is
    # bert-base-uncased's, restricted to the ids of the training captions); CPU-sized decoder.
    "mdm-mini": MDMConfig(
        image_encoder="conv", image_size=64, image_width=128, image_layers=0, image_heads=4, image_patch=8,
        image_norm="half", lm_vocab="train", width=128, layers=3, heads=4, ffn=512, dropout=0.0, steps=24,
        blocks=2, cfg_drop_prob=0.0,  # guidance lowered CIDEr on validation: no unconditional branch trained
    ),
    # Test-sized: ladic-tiny's 32 px conv encoder and word-level vocabulary.
    "mdm-tiny": MDMConfig(
        image_encoder="conv", image_size=32, image_width=32, image_layers=0, image_heads=2, image_patch=8,
        image_norm="half", tokenizer="word", lm_vocab="train", width=32, layers=2, heads=2, ffn=64,
        dropout=0.0, steps=4,
    ),
}
