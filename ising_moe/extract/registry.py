"""Registry of the MoE models ising-moe knows by alias (no torch needed).

The ``config`` of each alias holds the values of the model's published ``config.json`` (needed for
``--random-init`` offline: transformers' default configs are *not* the real ones; e.g.
switch-base-N has ``d_ff = 3072`` and 6 sparse encoder layers, every second block, while the
default config has 2048 and 3).

Model organisms trained here (``isingmoe train``) are aliases of local checkpoint directories under
the installation's ``models/`` (or ``$ISINGMOE_MODELS``). Shipped data (expert files, the default
corpus) are found relative to the installation too, never relative to the working directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidParameterError

__all__ = ["ModelSpec", "MODELS", "ORGANISMS", "SUPPORTED_FAMILIES", "resolve_model", "data_dir",
           "data_dirs", "shipped_data_dir", "models_dir", "find_data_file", "default_output"]

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
    train_command : str
        For a model organism: the ``isingmoe train`` arguments that build its checkpoint (empty:
        not an organism).
    """

    alias: str
    hub_id: str
    family: str | None = None
    n_experts: int | None = None
    top_k: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    reduced: dict[str, Any] = field(default_factory=dict)
    train_command: str = ""

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


#: model organisms trained here: alias -> (``isingmoe train`` preset, load balancing)
_ORGANISM_RECIPES = {
    "olmoe-tiny": ("olmoe-tiny", "aux"),
    "olmoe-tiny-mem": ("olmoe-tiny", "mem"),
    "switch-tiny": ("switch-tiny", "aux"),
}


def _organisms() -> dict[str, ModelSpec]:
    """Aliases of the trained organisms and of their untrained twins (``<alias>-untrained``: the same
    configuration at step 0, saved by ``isingmoe train`` in ``<checkpoint>/untrained``)."""
    specs = {}
    for alias, (preset, balance) in _ORGANISM_RECIPES.items():
        command = f"--preset {preset} --balance {balance}"
        specs[alias] = ModelSpec(alias=alias, hub_id=f"models/{alias}", train_command=command)
        specs[f"{alias}-untrained"] = ModelSpec(alias=f"{alias}-untrained", hub_id=f"models/{alias}/untrained",
                                                train_command=command)
    return specs


#: model organisms (``hub_id`` relative to :func:`models_dir`'s parent until resolved)
ORGANISMS: dict[str, ModelSpec] = _organisms()
MODELS.update(ORGANISMS)


def install_root() -> Path:
    """The directory holding the ``ising_moe`` package (the repository root for a checkout)."""
    return Path(__file__).resolve().parents[2]


def models_dir() -> Path:
    """Where the organisms' checkpoints live: ``$ISINGMOE_MODELS``, else ``<installation>/models``."""
    env = os.environ.get("ISINGMOE_MODELS")
    return Path(env) if env else install_root() / "models"


def _resolve_organism(spec: ModelSpec) -> ModelSpec:
    from ..errors import ModelNotAvailableError

    trained = spec.alias.removesuffix("-untrained")
    root = models_dir() / trained
    path = root / "untrained" if spec.alias.endswith("-untrained") else root
    if not (path / "config.json").is_file():
        raise ModelNotAvailableError(
            f"the model organism {spec.alias} is not built: no checkpoint in {path}. Build it (CPU, "
            f"minutes) with `isingmoe train {spec.train_command} -o {root}`"
        )
    return ModelSpec(alias=spec.alias, hub_id=str(path), train_command=spec.train_command)


def resolve_model(name: str) -> ModelSpec:
    """An alias (``switch-8``, ``olmoe-tiny``), a hub id (``org/name``) or a local checkpoint directory.

    Organism aliases resolve to their checkpoint directory under :func:`models_dir`.

    Raises
    ------
    InvalidParameterError
        For a name that is none of these.
    ModelNotAvailableError
        For an organism whose checkpoint has not been built (the message gives the command).
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidParameterError("--model must be an alias, a hub id or a local directory")
    if name in ORGANISMS:
        return _resolve_organism(ORGANISMS[name])
    if name in MODELS:
        return MODELS[name]
    for spec in MODELS.values():
        if spec.hub_id == name and not spec.train_command:
            return spec
    if Path(name).is_dir() or (name.count("/") == 1 and not name.startswith((".", "/", "~"))):
        return ModelSpec(alias=name, hub_id=name)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise InvalidParameterError(f"no checkpoint directory {name}: check the path (a hub id is org/name)")
    raise InvalidParameterError(
        f"unknown model {name!r}: use an alias ({', '.join(MODELS)}), a Hugging Face hub id "
        "(org/name) or a local checkpoint directory"
    )


def shipped_data_dir() -> Path:
    """The data shipped with the installation: ``<installation>/data`` (the repository's ``data/``
    for a checkout installed with ``pip install -e``)."""
    return install_root() / "data"


def data_dir(explicit=None) -> Path:
    """Where expert-sequence files are written by default.

    ``explicit`` (``--data-dir``), else ``$ISINGMOE_DATA``, else the installation's ``data/``
    (:func:`shipped_data_dir`) when it exists, else ``./data``. Never the working directory's
    ``data/`` when the installation has one, so that commands work from any directory.
    """
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get("ISINGMOE_DATA")
    if env:
        return Path(env)
    shipped = shipped_data_dir()
    return shipped if shipped.is_dir() else Path("data")


def data_dirs(explicit=None) -> list[Path]:
    """Directories searched for expert files, in order: :func:`data_dir`, ``./data`` (files
    extracted earlier from this working directory), the installation's ``data/``."""
    dirs = []
    for path in (data_dir(explicit), Path("data"), shipped_data_dir()):
        if path.is_dir() and not any(path.resolve() == d.resolve() for d in dirs):
            dirs.append(path)
    return dirs or [data_dir(explicit)]


def default_output(alias: str, random_init: bool, reduced: bool = False, directory=None) -> Path:
    """Default extraction file: ``<data_dir>/<alias>.h5`` or ``<alias>.random-init[-reduced].h5``."""
    safe = alias.replace("/", "--")
    suffix = ".random-init-reduced" if reduced else (".random-init" if random_init else "")
    return data_dir(directory) / f"{safe}{suffix}.h5"


def find_data_file(alias: str, directory=None) -> Path | None:
    """The expert file for an alias: the user's own extraction first, then random-init data.

    Searches :func:`data_dirs` (explicit directory or ``$ISINGMOE_DATA``, ``./data``, the
    installation's ``data/``) for ``<alias>.h5``, then ``<alias>.random-init.h5``, then
    ``<alias>.random-init-reduced.h5``.
    """
    safe = alias.replace("/", "--")
    for suffix in ("", ".random-init", ".random-init-reduced"):
        for folder in data_dirs(directory):
            path = folder / f"{safe}{suffix}.h5"
            if path.is_file():
                return path
    return None
