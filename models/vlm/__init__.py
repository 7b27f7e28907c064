"""Released vision-language models as zero-shot captioners (models/vlm/base.py)."""
