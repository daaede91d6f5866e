"""evedit: video editing by Factorized Diffusion Distillation (EVE, arXiv 2403.09334).

Video tensors inside models use one layout, ``(B, C, F, H, W)``; video arrays at file
boundaries are ``uint8`` numpy arrays shaped ``(F, H, W, 3)``.
"""

__version__ = "0.1.0"
