"""What every released VLM captioner here shares: loading, the caption prompt, images, post-processing.

A VLM is run as released, zero-shot: transformers' image-text-to-text class (`AutoModelForImageTextToText`
by default, or the class a variant names), the checkpoint's own processor, a chat-template prompt holding
the image and a caption instruction, and a post-processing step recorded in the config:
  - prompt: the chat template of the checkpoint applied to one user turn [image, `instruction`] with the
    generation prompt added (the model's turn); `chat_template: false` instead feeds `instruction` as
    plain text after the image tokens (checkpoints without a chat template, e.g. PaliGemma's "caption en");
  - post-processing `first_sentence`: the generated text (the prompt is never decoded: only the ids
    after it are), whitespace collapsed, a leading repeat of the instruction stripped, then cut at the
    first line break and after the first sentence end (. ! ?), Markdown emphasis (*, _, quotes) trimmed
    at both ends. `none` keeps the text whole. The `raw` probe returns the text before this step.

Images: `preprocess` resizes every image to `image_size` x `image_size` (aspect ratio not kept, as BLIP's
and GIT's processors do) and returns it as uint8, so a batch stacks; the checkpoint's processor then
applies its own resizing, patching and normalisation inside `caption`. Deviation: the processor sees a
square image, not the original aspect ratio (Gemma 4's processor would otherwise keep it).

Weights: `weights` is a hub id or a directory, resolved by models/weights.py ($BENCH_WEIGHTS_DIR/<org>--<name>,
the Hugging Face cache, the hub), with the same offline `WeightsNotFound` message and the same weights
fingerprint in the job hash as BLIP and GIT. `weights: null` builds the variant's tiny configuration
(models/vlm/tiny.py), random weights: that is how tests run every code path without a checkpoint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from PIL import Image

from bench.api import Captioner, CaptionerConfig
from models.hf_captioner import strip_prompt
from models.weights import load_pretrained, save_pretrained_captioner

INSTRUCTION = "A short caption:"
POSTPROCESS = ("first_sentence", "none")
_SENTENCE_END = re.compile(r"[.!?][\"'\u201d\u2019)]*(?=\s|$)")  # an end mark, closing quotes, then a space


@dataclass
class VlmConfig(CaptionerConfig):
    #: hub id or directory of the checkpoint; None builds `tiny` (models/vlm/tiny.py), random weights.
    weights: str | None = None
    #: what the checkpoint is, for reports (instruction-tuned, COCO-fine-tuned, ...).
    checkpoint: str = ""
    #: transformers' model class loaded by name (lazily).
    model_class: str = "AutoModelForImageTextToText"
    #: processor class: "AutoProcessor" or "models.vlm.processors:ImageOnlyGemma4Processor".
    processor: str = "AutoProcessor"
    #: the tiny architecture built when `weights` is None (a key of models/vlm/tiny.py's BUILDERS).
    tiny: str = "gemma4"
    instruction: str = INSTRUCTION
    chat_template: bool = True
    postprocess: str = "first_sentence"
    image_size: int = 768  # square size every image is resized to before the processor
    max_new_tokens: int = 32
    dtype: str = "float32"  # the weights' dtype on the device: float32 | bfloat16 | float16

    def __post_init__(self) -> None:
        if self.postprocess not in POSTPROCESS:
            raise ValueError(f"postprocess: {self.postprocess!r} is not accepted; accepted: {', '.join(POSTPROCESS)}")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype: {self.dtype!r} is not accepted; accepted: float32, bfloat16, float16")


def first_sentence(text: str) -> str:
    """The first line's first sentence of `text`, emphasis marks and quotes trimmed at both ends."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    head = lines[0] if lines else ""
    end = _SENTENCE_END.search(head)
    head = head[:end.end()] if end else head
    return " ".join(head.strip(" *_\"'`").split())


def load_class(name: str) -> Any:
    """transformers' class `name`, or `module:attr` from this project."""
    if ":" in name:
        import importlib

        module, attr = name.split(":")
        return getattr(importlib.import_module(module), attr)
    import transformers

    return getattr(transformers, name)


class VlmCaptioner(Captioner):
    """A released VLM as an image captioner (see the module docstring); families subclass it."""

    config_class = VlmConfig
    config: VlmConfig
    #: the tiny variant named in the offline error (no weights needed).
    tiny_variant: ClassVar[str]
    #: the end-of-caption ids besides the tokenizer's eos (e.g. Gemma's <end_of_turn>).
    end_tokens: ClassVar[tuple[str, ...]] = ("<end_of_turn>", "<turn|>", "<|im_end|>", "<end_of_utterance>")

    def __init__(self, config: VlmConfig, module: torch.nn.Module | None = None, processor: Any = None):
        super().__init__(config)
        if module is None or processor is None:
            module, processor = self._pretrained() if config.weights else self._tiny()
        self._module = module.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"  # generation continues every row from its last prompt token
        vocab = self.tokenizer.get_vocab()
        self.end_ids = {i for i in (self.tokenizer.eos_token_id, self.tokenizer.pad_token_id) if i is not None}
        self.end_ids |= {vocab[t] for t in self.end_tokens if t in vocab}

    # -- construction -------------------------------------------------------------------------
    def _pretrained(self) -> tuple[torch.nn.Module, Any]:
        source = self.config.weights
        loader = load_class(self.config.model_class).from_pretrained
        module = load_pretrained(loader, source, self.tiny_variant, dtype=getattr(torch, self.config.dtype))
        processor = load_pretrained(load_class(self.config.processor).from_pretrained, source, self.tiny_variant)
        return module, processor

    def _tiny(self) -> tuple[torch.nn.Module, Any]:
        from models.vlm.tiny import build_tiny

        return build_tiny(self.config.tiny)

    @property
    def module(self) -> torch.nn.Module:
        return self._module

    def module_dtype(self) -> torch.dtype:
        return next(self.module.parameters()).dtype

    # -- images and prompt --------------------------------------------------------------------
    def preprocess(self, image: Image.Image, train: bool = False) -> torch.Tensor:
        """The image resized to `image_size` squared, uint8 (3, H, W); the processor runs in `caption`."""
        import numpy as np

        size = self.config.image_size
        array = np.asarray(image.convert("RGB").resize((size, size), Image.BICUBIC))
        return torch.from_numpy(array.copy()).permute(2, 0, 1)

    def prompt_text(self) -> str:
        """The text before the caption: the chat template with the image and instruction, or plain."""
        if not self.config.chat_template:
            return self.config.instruction
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.config.instruction}]}]
        # The template is rendered by the tokenizer: some processors' own apply_chat_template also prepares
        # video sampling (SmolVLM's), which an image-only processor has not got.
        template = getattr(self.processor, "chat_template", None) or self.tokenizer.chat_template
        return self.tokenizer.apply_chat_template(messages, chat_template=template, add_generation_prompt=True,
                                                  tokenize=False)

    def model_inputs(self, pixel_values: torch.Tensor, suffixes: list[str] | None = None) -> dict[str, torch.Tensor]:
        """The processor's inputs for a batch of `preprocess` outputs: prompt (+ a suffix per image)."""
        images = [Image.fromarray(x.permute(1, 2, 0).cpu().numpy()) for x in pixel_values]
        prompt = self.prompt_text()
        texts = [prompt + (suffixes[i] if suffixes else "") for i in range(len(images))]
        enc = self.processor(images=[[im] for im in images], text=texts, return_tensors="pt", padding=True)
        enc.pop("labels", None)  # PaliGemma's processor adds training labels; inference computes no loss
        dtype = self.module_dtype()
        return {k: (v.to(self.device, dtype) if v.is_floating_point() else v.to(self.device)) for k, v in enc.items()}

    # -- text ---------------------------------------------------------------------------------
    def decode(self, ids: torch.Tensor) -> list[str]:
        """Generated ids (prompt removed) -> text up to the first end id, special tokens dropped."""
        rows = []
        for row in ids.tolist():
            stop = next((i for i, t in enumerate(row) if t in self.end_ids), len(row))
            rows.append(row[:stop])
        return [" ".join(t.split()) for t in self.tokenizer.batch_decode(rows, skip_special_tokens=True)]

    def postprocess(self, text: str) -> str:
        """The recorded post-processing (`postprocess`) of one decoded text."""
        text = strip_prompt(text, self.config.instruction)
        return first_sentence(text) if self.config.postprocess == "first_sentence" else text

    def tokens_before_end(self, ids: torch.Tensor) -> list[int]:
        return [next((i for i, t in enumerate(row) if t in self.end_ids), len(row)) for row in ids.tolist()]

    # -- training (not part of the zero-shot suites) ------------------------------------------
    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__}: released VLMs run zero-shot here; fine-tuning them is "
                                  "not implemented (leave 'train' out of the suite's phases)")

    # -- persistence --------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """A save_pretrained directory (model + processor), usable as `weights`, plus this config."""
        save_pretrained_captioner(self.module, self.processor, self.config, directory)

    @classmethod
    def load(cls, directory: Path) -> VlmCaptioner:
        """Restore a `save` directory (its bench_captioner.json says the variant and settings)."""
        import dataclasses
        import json

        from models.weights import CAPTIONER_CONFIG

        raw = json.loads((Path(directory) / CAPTIONER_CONFIG).read_text())
        names = {f.name for f in dataclasses.fields(cls.config_class)}
        config = cls.config_class(**{k: v for k, v in raw.items() if k in names})
        return cls(dataclasses.replace(config, weights=str(directory)))
