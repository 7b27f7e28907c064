"""Tiny random-weight configurations of the VLM classes, with an offline tokenizer and processor.

No checkpoint is needed: a word-level tokenizer (the `tokenizers` library, saved as a fast tokenizer)
holds the special tokens each processor and chat template need, and the model is built from a small
config of the real class. Tests run every phase on these through the same captioner code as released
checkpoints; `bench device-check --tiny` runs its VLM path on them on the CPU.

Sizes: DiffusionGemma and Gemma 4 keep their architecture features (mixture of experts with top-k
routing, sliding and full attention layers, the Gemma 4 vision tower with pooling); only widths,
depths, expert counts and the vocabulary are small. The special-token ids are set from the tiny
vocabulary (the published ones, e.g. image 258880, would need a 262,144-token vocabulary).
"""

from __future__ import annotations

from typing import Any

import torch

WORDS = ("a an the one two man woman person people dog cat horse bird car bus train plane boat red blue green "
         "yellow white black small large big on in of with at near next to and is are sitting standing "
         "walking riding holding table grass street water field road circle square triangle shape picture "
         "image photo . , : ! ? A short caption caption: en user model User Assistant").split()
GEMMA_SPECIALS = ("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>", "<|image|>", "<|image>",
                  "<image|>", "<|video|>")
GEMMA_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}\n"
                  "{% for c in m['content'] %}{% if c['type'] == 'image' %}<|image|>{% else %}{{ c['text'] }}"
                  "{% endif %}{% endfor %}<end_of_turn>\n{% endfor %}"
                  "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")


def word_tokenizer(specials: tuple[str, ...], **named: Any) -> Any:
    """A fast word-level tokenizer: `specials` first (ids 0..), then WORDS; `named` special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(dict.fromkeys((*specials, *WORDS, "\n")))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok.add_special_tokens(list(specials))  # split out of running text ("<img><img>"), skipped when decoding
    return PreTrainedTokenizerFast(tokenizer_object=tok, **named)


def gemma_processor() -> Any:
    """Gemma 4's image processor (PIL) and chat template over a tiny tokenizer, images only."""
    from transformers import Gemma4ImageProcessorPil

    from models.vlm.processors import ImageOnlyGemma4Processor

    tokenizer = word_tokenizer(GEMMA_SPECIALS, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                               unk_token="<unk>", extra_special_tokens={
                                   "image_token": "<|image|>", "boi_token": "<|image>", "eoi_token": "<image|>"})
    tokenizer.chat_template = GEMMA_TEMPLATE
    # 70 soft tokens (the smallest budget the processor accepts) of 4-pixel patches pooled 2 x 2.
    image_processor = Gemma4ImageProcessorPil(max_soft_tokens=70, patch_size=4, pooling_kernel_size=2)
    return ImageOnlyGemma4Processor(image_processor, tokenizer, chat_template=GEMMA_TEMPLATE)


def gemma_text_config(vocab_size: int, width: int = 64) -> dict[str, Any]:
    """A 2-layer MoE text config (sliding then full attention), Gemma's special ids 0, 1, 2."""
    return dict(vocab_size=vocab_size, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=1, head_dim=32, global_head_dim=32, sliding_window=16,
                layer_types=["sliding_attention", "full_attention"], num_experts=4, top_k_experts=2,
                moe_intermediate_size=width, pad_token_id=0, eos_token_id=1, bos_token_id=2)


VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
              num_key_value_heads=2, head_dim=16, patch_size=4, pooling_kernel_size=2, position_embedding_size=64)


def _image_ids(tokenizer: Any) -> dict[str, int]:
    ids = tokenizer.convert_tokens_to_ids
    return {"image_token_id": ids("<|image|>"), "boi_token_id": ids("<|image>"), "eoi_token_id": ids("<image|>")}


def build_gemma4() -> tuple[torch.nn.Module, Any]:
    from transformers import Gemma4Config, Gemma4ForConditionalGeneration

    processor = gemma_processor()
    vocab = len(processor.tokenizer)
    text = {**gemma_text_config(vocab), "enable_moe_block": True, "vocab_size_per_layer_input": vocab,
            "hidden_size_per_layer_input": 0}
    config = Gemma4Config(text_config=text, vision_config=VISION, audio_config=None,
                          video_token_id=processor.tokenizer.convert_tokens_to_ids("<|video|>"),
                          **_image_ids(processor.tokenizer))
    return Gemma4ForConditionalGeneration(config), processor


def build_diffusion_gemma(canvas_length: int = 16) -> tuple[torch.nn.Module, Any]:
    from transformers import DiffusionGemmaConfig, DiffusionGemmaForBlockDiffusion

    processor = gemma_processor()
    config = DiffusionGemmaConfig(text_config=gemma_text_config(len(processor.tokenizer)), vision_config=VISION,
                                  canvas_length=canvas_length, **_image_ids(processor.tokenizer))
    return DiffusionGemmaForBlockDiffusion(config), processor


BUILDERS = {"gemma4": build_gemma4, "diffusion_gemma": build_diffusion_gemma}


def build_tiny(name: str) -> tuple[torch.nn.Module, Any]:
    """(module, processor) of the tiny configuration `name` (a key of BUILDERS), random weights."""
    if name not in BUILDERS:
        raise ValueError(f"tiny: {name!r} has no tiny configuration; accepted: {', '.join(BUILDERS)}")
    torch.manual_seed(0)  # the same random weights every time: tests and device-check --tiny agree
    return BUILDERS[name]()


QWEN_SPECIALS = ("<pad>", "<eos>", "<bos>", "<unk>", "<|im_start|>", "<|im_end|>", "<|image_pad|>", "<|video_pad|>",
                 "<|vision_start|>", "<|vision_end|>")
QWEN_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
                 "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c['text'] }}"
                 "{% endif %}{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
                 "{% endif %}")


def build_qwen2_5_vl() -> tuple[torch.nn.Module, Any]:
    """Qwen2.5-VL: its PIL image processor (4-pixel patches merged 2 x 2) and chat template, images only."""
    import transformers as tf

    from models.vlm.processors import image_only

    tokenizer = word_tokenizer(QWEN_SPECIALS, pad_token="<pad>", eos_token="<|im_end|>", unk_token="<unk>")
    tokenizer.chat_template = QWEN_TEMPLATE
    image_processor = tf.Qwen2VLImageProcessorPil(min_pixels=16 * 16, max_pixels=64 * 64, patch_size=4, merge_size=2)
    processor = image_only(tf.Qwen2_5_VLProcessor)(image_processor, tokenizer, chat_template=QWEN_TEMPLATE)
    ids = tokenizer.convert_tokens_to_ids
    text = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                rope_scaling={"type": "mrope", "mrope_section": [4, 6, 6]},
                bos_token_id=ids("<bos>"), eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<pad>"))
    vision = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=4, spatial_merge_size=2,
                  temporal_patch_size=2, out_hidden_size=64, fullatt_block_indexes=[0], window_size=16)
    config = tf.Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=ids("<|image_pad|>"),
                                 video_token_id=ids("<|video_pad|>"), vision_start_token_id=ids("<|vision_start|>"))
    return tf.Qwen2_5_VLForConditionalGeneration(config), processor


def build_paligemma() -> tuple[torch.nn.Module, Any]:
    """PaliGemma 2 (SigLIP + Gemma 2): its processor (image tokens, bos, prompt, newline), no chat template."""
    import transformers as tf

    tokenizer = word_tokenizer(GEMMA_SPECIALS + ("<image>",), pad_token="<pad>", eos_token="<eos>",
                               bos_token="<bos>", unk_token="<unk>", extra_special_tokens={"image_token": "<image>"})
    image_processor = tf.SiglipImageProcessorPil(size={"height": 32, "width": 32})
    image_processor.image_seq_length = 16  # (32 / 8)^2 patches
    processor = tf.PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    vocab = len(processor.tokenizer)
    config = tf.PaliGemmaConfig(
        text_config=dict(model_type="gemma2", vocab_size=vocab, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                         pad_token_id=0, eos_token_id=1, bos_token_id=2),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, projection_dim=64),
        image_token_id=processor.image_token_id, projection_dim=64)
    return tf.PaliGemmaForConditionalGeneration(config), processor


SMOLVLM_SPECIALS = ("<pad>", "<eos>", "<bos>", "<unk>", "<|im_start|>", "<end_of_utterance>", "<image>",
                    "<fake_token_around_image>", "<global-img>", "<video>")
SMOLVLM_TEMPLATE = ("<|im_start|>{% for m in messages %}{{ m['role'] | capitalize }}:{% for c in m['content'] %}"
                    "{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
                    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}")


def build_smolvlm() -> tuple[torch.nn.Module, Any]:
    """SmolVLM (SigLIP + a Llama-type decoder, pixel shuffle 2): its processor without image splitting."""
    import transformers as tf

    from models.vlm.processors import ImageOnlySmolVLMProcessor

    tokenizer = word_tokenizer(SMOLVLM_SPECIALS, pad_token="<pad>", eos_token="<end_of_utterance>",
                               bos_token="<|im_start|>", unk_token="<unk>", extra_special_tokens={
                                   "image_token": "<image>", "fake_image_token": "<fake_token_around_image>",
                                   "global_image_token": "<global-img>", "end_of_utterance_token": "<end_of_utterance>"})
    tokenizer.chat_template = SMOLVLM_TEMPLATE
    image_processor = tf.SmolVLMImageProcessorPil(do_image_splitting=False, size={"longest_edge": 32},
                                                  max_image_size={"longest_edge": 32})
    # 32 px / 8 px patches = 16 patches, pixel-shuffled 2 x 2 into 4 image tokens.
    processor = ImageOnlySmolVLMProcessor(image_processor, tokenizer, chat_template=SMOLVLM_TEMPLATE, image_seq_len=4)
    ids = tokenizer.convert_tokens_to_ids
    config = tf.SmolVLMConfig(
        text_config=dict(model_type="llama", vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, pad_token_id=0,
                         bos_token_id=ids("<|im_start|>"), eos_token_id=ids("<end_of_utterance>")),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        scale_factor=2, image_token_id=ids("<image>"))
    return tf.SmolVLMForConditionalGeneration(config), processor


BUILDERS.update(qwen2_5_vl=build_qwen2_5_vl, paligemma=build_paligemma, smolvlm=build_smolvlm)
