"""evedit: video editing by Factorized Diffusion Distillation (EVE, arXiv 2403.09334).

Video tensors inside models use one layout, ``(B, C, F, H, W)``; video arrays at file
boundaries are ``uint8`` numpy arrays shaped ``(F, H, W, 3)``.

``from evedit import EditPipeline`` gives the editing pipeline (and ``EditResult``), imported on
first use so that ``import evedit`` (and the command line's start) does not import torch.
"""

__version__ = "0.4.21"

__all__ = ["EditPipeline", "EditResult", "__version__"]


def __getattr__(name: str):
    """``EditPipeline`` and ``EditResult`` on first use, through :mod:`evedit.editing`'s own lazy
    names: ``import evedit`` stays free of torch."""
    if name in ("EditPipeline", "EditResult"):
        from . import editing

        value = getattr(editing, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
