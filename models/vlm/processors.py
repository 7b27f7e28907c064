"""Image-only processors: a VLM's own processor less its video and audio parts.

Gemma 4's processor (shared by DiffusionGemma) bundles an audio feature extractor and a video processor;
transformers' video processors need torchvision, which captioning does not. `ImageOnlyGemma4Processor`
keeps exactly what captioning uses (the tokenizer with its chat template, the PIL image processor, the
image-token expansion boi + n image tokens + eoi of `Gemma4Processor`) and loads from the same
checkpoint directory, so a captioner runs with or without torchvision. `image_only(cls)` does the same
for processors whose images and text need nothing else (Qwen2.5-VL's and SmolVLM's: `ImageOnlyQwen2_5_VLProcessor`,
`ImageOnlySmolVLMProcessor`):
the processor's own code, its video processor left out. A variant names its processor class
(`VlmConfig.processor`); "AutoProcessor" is the default for families whose processor has no video part
(PaliGemma).
"""

from __future__ import annotations

import inspect
from typing import Any

from transformers import Gemma4Processor
from transformers.processing_utils import ProcessorMixin


class ImageOnlyGemma4Processor(Gemma4Processor):
    """`Gemma4Processor` for images and text only (no audio feature extractor, no video processor)."""

    def __init__(self, image_processor: Any, tokenizer: Any, chat_template: str | None = None,
                 image_seq_length: int = 280, **kwargs: Any):
        # What Gemma4Processor.__init__ sets for images (its video and audio attributes stay unset).
        self.image_seq_length = image_seq_length
        self.image_token_id = tokenizer.image_token_id
        self.boi_token, self.eoi_token, self.image_token = tokenizer.boi_token, tokenizer.eoi_token, tokenizer.image_token
        self.video_token = self.video_token_id = None
        self.audio_token = self.audio_token_id = None
        # Not None: Gemma4Processor.validate_inputs reads `... or self.boa_token is None or ...` without
        # brackets, so a None here would reject every call as "audio without an audio token".
        self.boa_token = self.eoa_token = ""
        self.audio_seq_length, self.audio_ms_per_token = 750, 40
        kwargs = {k: v for k, v in kwargs.items() if k not in ("audio_seq_length", "audio_ms_per_token")}
        ProcessorMixin.__init__(self, image_processor=image_processor, tokenizer=tokenizer,
                                chat_template=chat_template, **kwargs)

    @classmethod
    def from_pretrained(cls, source: str, **kwargs: Any) -> ImageOnlyGemma4Processor:
        """The tokenizer (with the chat template) and the PIL image processor of a Gemma 4 checkpoint."""
        from transformers import AutoTokenizer, Gemma4ImageProcessorPil

        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        image_processor = Gemma4ImageProcessorPil.from_pretrained(source, **kwargs)
        return cls(image_processor, tokenizer, chat_template=getattr(tokenizer, "chat_template", None))


class _WithoutVideo(ProcessorMixin):
    """Placed after a processor class in the MRO: drops its video processor / audio feature extractor
    (None) before ProcessorMixin sees them, so a subclass restricted to images and text initialises."""

    def __init__(self, *args: Any, **kwargs: Any):
        kept = [a for a in args if a is not None]  # processors pass (image_processor, tokenizer, video_processor)
        kwargs = {k: v for k, v in kwargs.items() if not (k in ("video_processor", "feature_extractor") and v is None)}
        super().__init__(*kept, **kwargs)


def image_only(base: type) -> type:
    """`base` (a transformers processor class) restricted to its image processor and tokenizer: built and
    loaded without its video processor (which needs torchvision), everything else its own code."""

    class ImageOnly(base, _WithoutVideo):
        @classmethod
        def get_attributes(cls) -> list[str]:
            return ["image_processor", "tokenizer"]

        @classmethod
        def validate_init_kwargs(cls, processor_config: dict[str, Any], valid_kwargs: Any) -> Any:
            # Loading keeps the settings the base's __init__ takes (e.g. SmolVLM's image_seq_len), which
            # this __init__ passes on through **kwargs.
            names = (*valid_kwargs, *[n for n in inspect.signature(base.__init__).parameters if n != "self"])
            return super().validate_init_kwargs(processor_config=processor_config, valid_kwargs=names)

        def __init__(self, image_processor: Any, tokenizer: Any, chat_template: str | None = None, **kwargs: Any):
            super().__init__(image_processor=image_processor, tokenizer=tokenizer, video_processor=None,
                             chat_template=chat_template, **kwargs)

    # save_pretrained keeps the attributes named in __init__'s signature (e.g. SmolVLM's image_seq_len):
    # show it the base's, less the parts left out.
    signature = inspect.signature(base.__init__)
    ImageOnly.__init__.__signature__ = signature.replace(parameters=[
        p for n, p in signature.parameters.items() if n not in ("video_processor", "feature_extractor")])
    ImageOnly.__name__ = ImageOnly.__qualname__ = f"ImageOnly{base.__name__}"
    return ImageOnly



def _qwen2_5_vl() -> type:
    from transformers import Qwen2_5_VLProcessor

    return image_only(Qwen2_5_VLProcessor)


ImageOnlyQwen2_5_VLProcessor = _qwen2_5_vl()


def _smolvlm() -> type:
    from transformers import SmolVLMProcessor

    return image_only(SmolVLMProcessor)


ImageOnlySmolVLMProcessor = _smolvlm()
