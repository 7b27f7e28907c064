"""LaDiC, the latent diffusion captioner (Wang et al., NAACL 2024): see models/ladic/captioner.py for the
model card (paper, upstream, licence, paradigm, every deviation) and config.py for the variants.

Kept light: importing the package loads no torch; the registry imports `captioner` on first use.
"""
