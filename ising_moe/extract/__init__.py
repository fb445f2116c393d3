"""Extraction of expert sequences from Hugging Face MoE models (the only torch-using subpackage).

Importing this package is cheap: torch and transformers are imported when :func:`extract` runs.
Supported families: SwitchTransformers (encoder only; top-1 with expert capacity), OLMoE, Mixtral,
Qwen2-MoE and Qwen3-MoE (fused ``experts(hidden, top_k_index, top_k_weights)`` modules).

Modules: ``registry`` (aliases, shipped data and organisms found beside the installation),
``checkpoint`` (checks and hashes of checkpoint directories, hub reachability), ``loading``
(configuration and weights; any missing or unexpected weight stops the run), ``job`` (every check
before any state is created), ``capture`` (forward hooks), ``positions`` (position-id ablation of
RoPE models), ``shard`` (several processes, ``torchrun``), ``run`` (the resumable job), ``corpus``
and ``tokenize``. ``python -m ising_moe.extract`` is ``isingmoe extract`` (for ``torchrun``).
"""

from __future__ import annotations

__all__ = ["extract", "ExtractionResult"]


def __getattr__(name):
    if name in __all__:
        from . import run

        return getattr(run, name)
    raise AttributeError(name)
