"""motive-index: which training clips most influenced the motion of a generated video."""

__version__ = "0.1.0"

__all__ = ["MotiveIndex", "__version__"]


def __getattr__(name):  # lazy: importing the package must not import torch
    if name == "MotiveIndex":
        from .api import MotiveIndex

        return MotiveIndex
    raise AttributeError(name)
