"""Published configurations of Gemma 4 26B-A4B-it and DiffusionGemma 26B-A4B-it (random-weight builds).

`bench device-check --vlm` builds both at their real size from these values, with no checkpoint (timing
and memory do not depend on the weights' values). Sources, in order of authority:
  - Gemma 4 text config and token ids: the config.json of google/gemma-4-26B-A4B-it as carried by a
    public quantisation of it (bg-digitalservices/Gemma-4-26B-A4B-it-NVFP4A16, transformers 5.5.0), which
    keeps every architecture field of the original and adds only its quantization_config;
  - DiffusionGemma: the same backbone (transformers' model documentation for diffusion_gemma: "same
    backbone as Gemma 4 26B-A4B"), with the values a public fine-tune's config.json shows (hidden 2816,
    intermediate 2112, head_dim 256, global_head_dim 512, canvas_length 256, image 258880, boi 255999,
    eoi 258882) and those of a public minimal DiffusionGemma config used by an inference port's tests
    (16 heads, 8 KV heads, 2 global KV heads, 128 experts, top 8, expert width 704, window 1024,
    soft-cap 30, vocabulary 262,144);
  - vision tower: hidden 1152, 16 heads of 72, 16 KV heads, `standardize` on and clipped linears off for
    the 26B and larger (a public conversion tool's "official size" table); patch 16, pooling 3 and 280
    soft tokens per image (the checkpoint config's `vision_soft_tokens_per_image`), position table 10240
    (transformers' default).

GUESSES (no published value found here), each marked `# guess` below: the vision tower's depth (27) and
MLP width (4304), SigLIP-So400m's values, which put the tower at about 550M parameters with a gated MLP,
the size the vendor states; DiffusionGemma's `use_bidirectional_attention` ("vision", Gemma 4's value: the
diffusion decoder builds its own bidirectional canvas mask).
"""

from __future__ import annotations

from typing import Any

LAYER_TYPES = ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(30)]  # 5:1
ROPE = {"full_attention": {"partial_rotary_factor": 0.25, "rope_theta": 1000000.0, "rope_type": "proportional"},
        "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"}}
TOKEN_IDS = {"boi_token_id": 255999, "eoi_token_id": 258882, "image_token_id": 258880}

GEMMA4_26B_TEXT: dict[str, Any] = {
    "attention_bias": False, "attention_k_eq_v": True, "bos_token_id": 2, "enable_moe_block": True,
    "eos_token_id": 1, "final_logit_softcapping": 30.0, "global_head_dim": 512, "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 2816, "hidden_size_per_layer_input": 0,
    "initializer_range": 0.02, "intermediate_size": 2112, "layer_types": LAYER_TYPES,
    "max_position_embeddings": 262144, "moe_intermediate_size": 704, "num_attention_heads": 16,
    "num_experts": 128, "num_global_key_value_heads": 2, "num_hidden_layers": 30, "num_key_value_heads": 8,
    "num_kv_shared_layers": 0, "pad_token_id": 0, "rms_norm_eps": 1e-06, "rope_parameters": ROPE,
    "sliding_window": 1024, "tie_word_embeddings": True, "top_k_experts": 8,
    "use_bidirectional_attention": "vision", "use_double_wide_mlp": False, "vocab_size": 262144,
    "vocab_size_per_layer_input": 262144,
}
VISION_26B: dict[str, Any] = {
    "hidden_size": 1152, "num_attention_heads": 16, "num_key_value_heads": 16, "head_dim": 72,
    "standardize": True, "use_clipped_linears": False, "patch_size": 16, "pooling_kernel_size": 3,
    "position_embedding_size": 10240,
    "num_hidden_layers": 27,  # guess
    "intermediate_size": 4304,  # guess
}
DIFFUSION_GEMMA_26B_TEXT: dict[str, Any] = {
    "hidden_size": 2816, "intermediate_size": 2112, "num_hidden_layers": 30, "num_attention_heads": 16,
    "num_key_value_heads": 8, "num_global_key_value_heads": 2, "head_dim": 256, "global_head_dim": 512,
    "moe_intermediate_size": 704, "num_experts": 128, "top_k_experts": 8, "vocab_size": 262144,
    "sliding_window": 1024, "final_logit_softcapping": 30.0, "attention_bias": False,
    "layer_types": LAYER_TYPES, "rope_parameters": ROPE, "max_position_embeddings": 262144,
    "tie_word_embeddings": True, "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2,
    "use_bidirectional_attention": "vision",  # guess
}
#: images become this many soft tokens (the checkpoint's processor and `vision_soft_tokens_per_image`).
SOFT_TOKENS_PER_IMAGE = 280


def gemma4_26b() -> Any:
    """transformers' Gemma4Config of google/gemma-4-26B-A4B-it (no audio tower: the 26B has none)."""
    from transformers import Gemma4Config

    return Gemma4Config(text_config=dict(GEMMA4_26B_TEXT), vision_config=dict(VISION_26B), audio_config=None,
                        video_token_id=258884, tie_word_embeddings=True, **TOKEN_IDS)


def diffusion_gemma_26b() -> Any:
    """transformers' DiffusionGemmaConfig of google/diffusiongemma-26B-A4B-it (canvas 256)."""
    from transformers import DiffusionGemmaConfig

    return DiffusionGemmaConfig(text_config=dict(DIFFUSION_GEMMA_26B_TEXT), vision_config=dict(VISION_26B),
                                canvas_length=256, tie_word_embeddings=True, **TOKEN_IDS)
