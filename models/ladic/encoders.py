"""Image encoders: the frozen BLIP ViT (ladic-base) and a small trainable conv encoder (mini/tiny).

Both map (batch, 3, size, size) pixels to a token sequence (batch, tokens, width), the memory the
diffuser cross-attends to. `frozen` tells the network whether to run the encoder without gradients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

    from models.ladic.config import ImageEncoderConfig


def preprocess(cfg: ImageEncoderConfig, image: Image.Image, train: bool = False) -> torch.Tensor:
    """A PIL image as the encoder's input: augmented in training (`cfg.augment`), resized to
    `cfg.image_size`, normalised by `cfg.image_norm` (CLIP's mean/std or 0.5/0.5). Shared by every
    captioner on these encoders (LaDiC, the masked-diffusion captioner)."""
    from models.imaging import CLIP_MEAN, CLIP_STD, HALF, augment, to_tensor

    if train:
        image = augment(image, cfg.augment)
    mean, std = (CLIP_MEAN, CLIP_STD) if cfg.image_norm == "clip" else (HALF, HALF)
    return to_tensor(image, cfg.image_size, mean, std)


class BlipImageEncoder(nn.Module):
    """BLIP's vision tower: all 197 tokens (CLS + 14x14 patches at 224px) after the final LayerNorm."""

    frozen = True

    def __init__(self, vision_model: nn.Module):
        super().__init__()
        self.vision = vision_model
        self.vision.requires_grad_(False)

    @property
    def width(self) -> int:
        return self.vision.config.hidden_size

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        # HF's BLIP captioning checkpoints are 384px; LaDiC feeds 224px (197 tokens) and interpolates
        # the position embeddings, as BLIP's own pre-training resolution was 224.
        resize = pixel_values.shape[-1] != self.vision.config.image_size
        return self.vision(pixel_values=pixel_values, interpolate_pos_encoding=resize).last_hidden_state

    def train(self, mode: bool = True) -> BlipImageEncoder:
        super().train(False)  # frozen: dropout off in training too
        return self


def blip_vision_config(size: int, width: int, layers: int, heads: int, patch: int) -> dict[str, Any]:
    """BlipVisionConfig fields of a ViT (BLIP base: 224px, 768 wide, 12 layers, 12 heads, patch 16)."""
    return {"image_size": size, "hidden_size": width, "num_hidden_layers": layers,
            "num_attention_heads": heads, "intermediate_size": 4 * width, "patch_size": patch}


def build_blip_encoder(vision_config: dict[str, Any], source: str | None,
                       offline: str = "ladic-mini") -> BlipImageEncoder:
    """The BLIP vision tower: loaded from a BLIP checkpoint when `source` is given, else random init.
    `offline`: the variant a missing checkpoint's error suggests instead.

    A captioning checkpoint (BlipForConditionalGeneration) keeps the tower under `vision_model.`;
    loading it as a bare BlipVisionModel would silently re-initialise every weight, so the whole
    model is loaded and its tower kept.
    """
    from transformers import BlipVisionConfig, BlipVisionModel

    if source is None:
        return BlipImageEncoder(BlipVisionModel(BlipVisionConfig.from_dict(vision_config)))
    from transformers import BlipForConditionalGeneration

    from models.weights import load_pretrained

    blip = load_pretrained(BlipForConditionalGeneration.from_pretrained, source, offline)
    return BlipImageEncoder(blip.vision_model)


class ConvImageEncoder(nn.Module):
    """Stride-2 convolutions (size -> size/stride grid), learned positions, a few transformer layers.

    Trained from scratch with the diffuser: on CPU a conv stem costs a fraction of a ViT's patch
    embedding + attention at the same token count, and the grid keeps where each shape is.
    """

    frozen = False

    def __init__(self, size: int, width: int, layers: int, heads: int, dropout: float = 0.0,
                 stride: int = 8):
        super().__init__()
        if stride not in (8, 16) or size % stride:
            raise ValueError(f"conv image encoder: stride 8 or 16 dividing image_size, got {stride}, {size}")
        half = max(8, width // 2)
        # A 4x4 stride-4 patch convolution, then 3x3 stride-2 convolutions: a third of the CPU time of
        # three 3x3 stride-2 convolutions at 64px (full-resolution convolutions dominate backward).
        # GroupNorm (batch-independent, unlike BatchNorm: a caption must not depend on batch mates)
        # keeps the from-scratch stem trainable at the high learning rates of short runs.
        convs: list[nn.Module] = [nn.Conv2d(3, half, 4, stride=4)]
        for cin, cout in [(half, width)] + ([(width, width)] if stride == 16 else []):
            convs += [nn.GroupNorm(_groups(cin), cin), nn.GELU(), nn.Conv2d(cin, cout, 3, stride=2, padding=1)]
        self.stem = nn.Sequential(*convs)
        self.positions = nn.Parameter(torch.randn((size // stride) ** 2, width) * 0.02)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(width, heads, 4 * width, dropout, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(width)
        self._width = width

    @property
    def width(self) -> int:
        return self._width

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        tokens = self.stem(pixel_values).flatten(2).transpose(1, 2) + self.positions
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)


def _groups(channels: int) -> int:
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)
