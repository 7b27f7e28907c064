"""Built-in captioners. Entries are lazy: a model module (and torch) is imported only when used.

Each entry names the class whose `variants` table holds the variant's config; a new model family adds
one module under models/ and its lines here (or, from another package, an entry point in the
`bench.captioners` group).
"""

from bench.registry import captioners as _c

_c.register("constant", "models.baselines:ConstantCaptioner",
            "Reference: the most frequent training caption, for every image.", "reference")
_c.register("nearest-neighbour", "models.baselines:NearestNeighbourCaptioner",
            "Reference: the caption of the nearest training image (downsampled-pixel features).",
            "reference")
_c.register("vit-gpt2-scratch", "models.vit_gpt2:VitGpt2Captioner",
            "ViT-B/16 encoder + GPT-2 (12 layers) decoder, random init, full size for GPUs.",
            "autoregressive")
_c.register("vit-gpt2-mini", "models.vit_gpt2:VitGpt2Captioner",
            "ViT + GPT-2 from scratch, CPU-sized (64px, 2+2 layers, width 128) for the shapes suite.",
            "autoregressive")
_c.register("vit-gpt2-tiny", "models.vit_gpt2:VitGpt2Captioner",
            "ViT + GPT-2 from scratch, test-sized.", "autoregressive")
_c.register("ladic-base", "models.ladic.captioner:LaDiCCaptioner",
            "LaDiC (paper sizes): frozen BLIP ViT-B/16, split BERT 6/6 latent, 12x1536 diffuser.",
            "diffusion")
_c.register("ladic-mini", "models.ladic.captioner:LaDiCCaptioner",
            "LaDiC, CPU-sized: MiniLM split 3/3 latent, small trainable image encoder and diffuser.",
            "diffusion")
_c.register("ladic-tiny", "models.ladic.captioner:LaDiCCaptioner",
            "LaDiC, test-sized.", "diffusion")
_c.register("blip-base", "models.blip:BlipCaptioner",
            "BLIP base (Salesforce/blip-image-captioning-base), its own captioning decoding.",
            "autoregressive")
_c.register("blip-tiny", "models.blip:BlipCaptioner",
            "BLIP architecture from a small config, trained from scratch (shapes, tests).",
            "autoregressive")
_c.register("git-base", "models.git:GitCaptioner",
            "GIT base fine-tuned on COCO (microsoft/git-base-coco), beam search.", "autoregressive")
_c.register("git-tiny", "models.git:GitCaptioner",
            "GIT architecture from a small config, trained from scratch (shapes, tests).",
            "autoregressive")
_c.register("mdm-base", "models.masked_diffusion.captioner:MaskedDiffusionCaptioner",
            "Masked diffusion: frozen BLIP ViT-B/16, bert-base-uncased vocabulary, 12x768 transformer.",
            "diffusion")
_c.register("mdm-mini", "models.masked_diffusion.captioner:MaskedDiffusionCaptioner",
            "Masked diffusion, CPU-sized: ladic-mini's conv encoder and vocabulary, 3x128 transformer.",
            "diffusion")
_c.register("mdm-tiny", "models.masked_diffusion.captioner:MaskedDiffusionCaptioner",
            "Masked diffusion, test-sized.", "diffusion")
_c.register("vlm-gemma4-26b-a4b", "models.vlm.autoregressive:VlmAutoregressiveCaptioner",
            "Gemma 4 26B-A4B-it (google/gemma-4-26B-A4B-it), instruction-tuned VLM, zero-shot captions.",
            "autoregressive")
_c.register("vlm-smolvlm-256m", "models.vlm.autoregressive:VlmAutoregressiveCaptioner",
            "SmolVLM-256M-Instruct (HuggingFaceTB), instruction-tuned small VLM, zero-shot captions.",
            "autoregressive")
_c.register("vlm-qwen2.5-vl-3b", "models.vlm.autoregressive:VlmAutoregressiveCaptioner",
            "Qwen2.5-VL-3B-Instruct (Qwen), instruction-tuned VLM, zero-shot captions.", "autoregressive")
_c.register("vlm-paligemma2-3b-mix", "models.vlm.autoregressive:VlmAutoregressiveCaptioner",
            "PaliGemma 2 3B mix-224 (google), fine-tuned on a task mixture with captioning, prompt 'caption en'.",
            "autoregressive")
_c.register("vlm-gemma4-test", "models.vlm.autoregressive:VlmAutoregressiveCaptioner",
            "Gemma 4 architecture from a tiny config, random weights, offline tokenizer (tests).",
            "autoregressive")
_c.register("vlm-diffusiongemma-26b-a4b", "models.vlm.diffusion_gemma:DiffusionGemmaCaptioner",
            "DiffusionGemma 26B-A4B-it (google/diffusiongemma-26B-A4B-it), block diffusion VLM, zero-shot.",
            "diffusion (block)")
_c.register("vlm-diffusiongemma-test", "models.vlm.diffusion_gemma:DiffusionGemmaCaptioner",
            "DiffusionGemma architecture from a tiny config, random weights, offline tokenizer (tests).",
            "diffusion (block)")
