"""Training small MoE language models ("model organisms") on CPU with the real Hugging Face classes.

Importing this package is cheap (no torch): :func:`train` imports torch and transformers when it
runs. The presets (:data:`PRESETS`) are plain dictionaries of configuration values.
"""

from __future__ import annotations

from .presets import PRESETS, preset

__all__ = ["PRESETS", "TrainResult", "TrainSpec", "preset", "train"]


def __getattr__(name):
    if name in ("train", "TrainResult", "TrainSpec"):
        from . import loop

        return getattr(loop, name)
    raise AttributeError(name)
