"""DiffCap-Bench: are diffusion image captioners really worse than autoregressive ones?"""

__version__ = "0.1.0"
