"""Extraction of expert sequences from Hugging Face MoE models (the only torch-using subpackage).

Importing this package is cheap: torch and transformers are imported when :func:`extract` runs.
Supported families: SwitchTransformers (encoder only; top-1 with expert capacity), OLMoE, Mixtral,
Qwen2-MoE and Qwen3-MoE (fused ``experts(hidden, top_k_index, top_k_weights)`` modules).
"""

from __future__ import annotations

__all__ = ["extract", "ExtractionResult"]


def __getattr__(name):
    if name in __all__:
        from . import run

        return getattr(run, name)
    raise AttributeError(name)
