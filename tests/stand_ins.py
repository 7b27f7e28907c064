"""Pretrained checkpoints in miniature, written with save_pretrained, for tests of loading and saving
models that freeze pretrained parts (no hub: the tests create them)."""

from __future__ import annotations

from pathlib import Path

#: A BLIP captioner small enough to build in a test: 32 px images, 8 px patches, width 32.
BLIP_VISION = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 64,
               "num_hidden_layers": 1, "num_attention_heads": 2}
BLIP_TEXT = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
             "num_attention_heads": 2, "encoder_hidden_size": 32}


def blip_checkpoint(directory: Path):
    """Save a randomly initialised tiny BLIP captioner to `directory`; returns the model."""
    from transformers import BlipConfig, BlipForConditionalGeneration

    blip = BlipForConditionalGeneration(BlipConfig(vision_config=BLIP_VISION, text_config=BLIP_TEXT))
    blip.save_pretrained(directory)
    return blip


def as_if_trained(module) -> None:
    """Nudge every trainable parameter, so the trained parts differ from any fresh build."""
    import torch

    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))


def revise_checkpoint(directory: Path) -> None:
    """Change a save_pretrained directory's config.json, as a new revision of the weights would."""
    config = directory / "config.json"
    config.write_text(config.read_text().replace("{", '{"note": "another revision",', 1))
