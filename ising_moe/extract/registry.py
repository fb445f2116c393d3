"""Registry of the MoE models ising-moe knows by alias (no torch needed).

The ``config`` of each alias holds the values of the model's published ``config.json`` (needed for
``--random-init`` offline: transformers' default configs are *not* the real ones; e.g.
switch-base-N has ``d_ff = 3072`` and 6 sparse encoder layers, every second block, while the
default config has 2048 and 3).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidParameterError

__all__ = ["ModelSpec", "MODELS", "SUPPORTED_FAMILIES", "resolve_model", "data_dir", "find_data_file"]

#: transformers ``model_type`` values whose routers ising-moe reads
SUPPORTED_FAMILIES = ("switch_transformers", "olmoe", "mixtral", "qwen2_moe", "qwen3_moe")


@dataclass(frozen=True)
class ModelSpec:
    """One MoE model: where it lives, how it routes, its real configuration.

    Attributes
    ----------
    alias : str
        Short name (``switch-8``) or, for unregistered models, the hub id / path itself.
    hub_id : str
        Hugging Face hub id, or a local directory.
    family : str or None
        transformers ``model_type`` (None until read from a local/hub config).
    n_experts, top_k : int or None
        Routing shape (None until known).
    config : dict
        Published configuration values (for ``--random-init``).
    reduced : dict
        Overrides for the reduced-size random-init variant shipped in ``data/`` (empty: none).
    """

    alias: str
    hub_id: str
    family: str | None = None
    n_experts: int | None = None
    top_k: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    reduced: dict[str, Any] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return Path(self.hub_id).is_dir()


def _switch(n: int) -> ModelSpec:
    return ModelSpec(
        alias=f"switch-{n}",
        hub_id=f"google/switch-base-{n}",
        family="switch_transformers",
        n_experts=n,
        top_k=1,
        config={
            "model_type": "switch_transformers", "vocab_size": 32128, "d_model": 768, "d_kv": 64,
            "d_ff": 3072, "num_layers": 12, "num_decoder_layers": 12, "num_sparse_encoder_layers": 6,
            "num_sparse_decoder_layers": 6, "num_heads": 12, "num_experts": n, "expert_capacity": 64,
            "router_bias": False, "router_jitter_noise": 0.01, "router_dtype": "float32",
            "router_ignore_padding_tokens": False, "relative_attention_num_buckets": 32,
            "relative_attention_max_distance": 128, "dropout_rate": 0.1, "layer_norm_epsilon": 1e-6,
            "dense_act_fn": "relu", "initializer_factor": 1.0, "pad_token_id": 0, "eos_token_id": 1,
            "decoder_start_token_id": 0, "is_encoder_decoder": True,
        },
    )


MODELS: dict[str, ModelSpec] = {
    **{f"switch-{n}": _switch(n) for n in (8, 16, 32, 64, 128)},
    "olmoe": ModelSpec(
        alias="olmoe",
        hub_id="allenai/OLMoE-1B-7B-0924",
        family="olmoe",
        n_experts=64,
        top_k=8,
        config={
            "model_type": "olmoe", "vocab_size": 50304, "hidden_size": 2048, "intermediate_size": 1024,
            "num_hidden_layers": 16, "num_attention_heads": 16, "num_key_value_heads": 16,
            "hidden_act": "silu", "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0, "attention_bias": False, "clip_qkv": None, "num_experts": 64,
            "num_experts_per_tok": 8, "norm_topk_prob": False, "router_aux_loss_coef": 0.01,
            "pad_token_id": 1, "bos_token_id": None, "eos_token_id": 50279, "tie_word_embeddings": False,
        },
        # all 16 MoE layers with 64 experts and top-8 routing are kept; the widths are divided by 4
        # (and the heads by 2) so that random-init extraction runs on a 2-core CPU
        reduced={"hidden_size": 512, "intermediate_size": 256, "num_attention_heads": 8,
                 "num_key_value_heads": 8},
    ),
    "mixtral": ModelSpec(
        alias="mixtral",
        hub_id="mistralai/Mixtral-8x7B-v0.1",
        family="mixtral",
        n_experts=8,
        top_k=2,
        config={
            "model_type": "mixtral", "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336,
            "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
            "hidden_act": "silu", "max_position_embeddings": 32768, "rms_norm_eps": 1e-5,
            "rope_theta": 1e6, "num_local_experts": 8, "num_experts_per_tok": 2,
            "router_aux_loss_coef": 0.02, "sliding_window": None, "bos_token_id": 1, "eos_token_id": 2,
            "tie_word_embeddings": False,
        },
    ),
    "qwen-moe": ModelSpec(
        alias="qwen-moe",
        hub_id="Qwen/Qwen1.5-MoE-A2.7B",
        family="qwen2_moe",
        n_experts=60,
        top_k=4,
        config={
            "model_type": "qwen2_moe", "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 5632,
            "num_hidden_layers": 24, "num_attention_heads": 16, "num_key_value_heads": 16,
            "hidden_act": "silu", "max_position_embeddings": 8192, "rms_norm_eps": 1e-6,
            "rope_theta": 1e6, "num_experts": 60, "num_experts_per_tok": 4, "moe_intermediate_size": 1408,
            "shared_expert_intermediate_size": 5632, "decoder_sparse_step": 1, "norm_topk_prob": False,
            "router_aux_loss_coef": 0.001, "use_sliding_window": False, "bos_token_id": 151643,
            "eos_token_id": 151643, "tie_word_embeddings": False,
        },
    ),
}


def resolve_model(name: str) -> ModelSpec:
    """An alias (``switch-8``), a hub id (``org/name``) or a local checkpoint directory.

    Raises
    ------
    InvalidParameterError
        For a name that is none of these.
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidParameterError("--model must be an alias, a hub id or a local directory")
    if name in MODELS:
        return MODELS[name]
    for spec in MODELS.values():
        if spec.hub_id == name:
            return spec
    if Path(name).is_dir() or (name.count("/") == 1 and not name.startswith((".", "/"))):
        return ModelSpec(alias=name, hub_id=name)
    raise InvalidParameterError(
        f"unknown model {name!r}: use an alias ({', '.join(MODELS)}), a Hugging Face hub id "
        "(org/name) or a local checkpoint directory"
    )


def data_dir() -> Path:
    """Where expert-sequence files live: ``$ISINGMOE_DATA``, else ``./data``."""
    return Path(os.environ.get("ISINGMOE_DATA", "data"))


def default_output(alias: str, random_init: bool, reduced: bool = False) -> Path:
    """Default extraction file name: ``data/<alias>.h5`` or ``data/<alias>.random-init[-reduced].h5``."""
    safe = alias.replace("/", "--")
    suffix = ".random-init-reduced" if reduced else (".random-init" if random_init else "")
    return data_dir() / f"{safe}{suffix}.h5"


def find_data_file(alias: str) -> Path | None:
    """The expert file for an alias: the user's own extraction first, then the shipped random-init one."""
    for random_init, reduced in ((False, False), (True, False), (True, True)):
        path = default_output(alias, random_init, reduced)
        if path.is_file():
            return path
    return None
