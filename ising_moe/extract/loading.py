"""Loading MoE models (pretrained weights, or random init from the real configuration)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from ..errors import MissingDependencyError, ModelNotAvailableError, UnsupportedModelError, require
from .registry import SUPPORTED_FAMILIES, ModelSpec

log = logging.getLogger(__name__)

__all__ = ["LoadedModel", "model_config", "load_model", "check_versions", "MIN_TRANSFORMERS"]

#: SwitchTransformers routing is broken in transformers 5.0-5.17 (capacity never enforced, router
#: "logits" are probabilities, output_router_logits crashes in 5.17); the fused-experts call
#: ``experts(hidden, top_k_index, top_k_weights)`` that the hooks rely on is 5.x.
MIN_TRANSFORMERS = (5, 18)


@dataclass
class LoadedModel:
    """A model in eval mode with what the provenance needs."""

    model: Any
    config: Any
    family: str
    n_experts: int
    top_k: int
    weights: str  # "pretrained" or "random-init"
    commit_hash: str | None
    dtype: str
    device: str


def check_versions() -> dict[str, str]:
    """torch and transformers versions; refuses a transformers older than :data:`MIN_TRANSFORMERS`."""
    torch = require("torch", "extract", "extraction")
    transformers = require("transformers", "extract", "extraction")
    from packaging.version import Version

    if Version(transformers.__version__).release[:2] < MIN_TRANSFORMERS:
        raise MissingDependencyError(
            f"transformers {transformers.__version__} is too old: its SwitchTransformers routing is "
            "broken before 5.18 (expert capacity not enforced, router logits are probabilities). "
            "Upgrade with `pip install 'transformers>=5.18,<6'`"
        )
    return {"torch": str(torch.__version__), "transformers": str(transformers.__version__)}


def _torch_dtype(name: str):
    import torch

    table = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
             "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}
    return table[name]


def _family_of(config) -> str:
    family = getattr(config, "model_type", None)
    if family not in SUPPORTED_FAMILIES:
        raise UnsupportedModelError(
            f"architecture {family!r} is not supported: ising-moe reads the routers of "
            f"{', '.join(SUPPORTED_FAMILIES)}"
        )
    return family


def _routing_shape(config, family: str) -> tuple[int, int]:
    if family == "switch_transformers":
        return int(config.num_experts), 1
    n_experts = getattr(config, "num_experts", None) or getattr(config, "num_local_experts", None)
    return int(n_experts), int(config.num_experts_per_tok)


def _model_class(family: str):
    if family == "switch_transformers":
        # encoder only: the routing of the input tokens is what is analysed
        from transformers import SwitchTransformersEncoderModel

        return SwitchTransformersEncoderModel
    from transformers import AutoModel

    return AutoModel


def _how_to_get(spec: ModelSpec, revision: str | None) -> str:
    cache = os.environ.get("HF_HOME", "~/.cache/huggingface")
    rev = f" --revision {revision}" if revision else ""
    return (
        f"weights of {spec.hub_id}{'@' + revision if revision else ''} are not in the local Hugging Face "
        f"cache (HF_HOME={cache}) and cannot be downloaded here. On a machine with internet run "
        f"`huggingface-cli download {spec.hub_id}{rev}` and copy the cache, or pass a local checkpoint "
        "directory with --model PATH; --random-init builds the model with random weights instead"
    )


def build_config(spec: ModelSpec, reduced: bool = False):
    """The model's real configuration (from the registry), optionally the reduced variant."""
    from transformers import AutoConfig

    values = dict(spec.config)
    if reduced:
        values.update(spec.reduced)
    model_type = values.pop("model_type")
    return AutoConfig.for_model(model_type, **values)


def model_config(spec: ModelSpec, *, revision: str | None = None, random_init: bool = False,
                 reduced: bool = False, local_only: bool | None = None):
    """The configuration to build or load: the registry's real one for random init of an alias,
    else the checkpoint's ``config.json`` (local directory, cache, or hub)."""
    check_versions()
    if local_only is None:
        local_only = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    if random_init and spec.config:
        config = build_config(spec, reduced)
    else:
        config = _load_config(spec, revision, local_only)
    _family_of(config)
    return config


def load_model(spec: ModelSpec, config, *, revision: str | None = None, dtype: str = "fp32",
               device: str = "cpu", random_init: bool = False, seed: int = 0,
               local_only: bool | None = None) -> LoadedModel:
    """Load a model for extraction, in eval mode on ``device``.

    Parameters
    ----------
    spec : ModelSpec
    config : PretrainedConfig
        From :func:`model_config`.
    revision : str, optional
        Hub revision (branch, tag or commit).
    dtype : {"bf16", "fp16", "fp32"}
    device : str
    random_init : bool
        Build from ``config`` with random weights (seeded) instead of loading weights.
    local_only : bool, optional
        Only look in the local cache (default: when ``HF_HUB_OFFLINE`` is set).

    Raises
    ------
    ModelNotAvailableError
        Weights are missing locally and cannot be downloaded (the message says how to get them).
    UnsupportedModelError
        The architecture is not one whose router ising-moe reads.
    """
    import torch

    if local_only is None:
        local_only = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    from transformers.utils import logging as hf_logging

    family = _family_of(config)
    torch_dtype = _torch_dtype(dtype)
    cls = _model_class(family)
    # loading the encoder of a Switch checkpoint leaves the decoder weights unused: not worth a report
    hf_logging.set_verbosity_error()
    if random_init:
        torch.manual_seed(seed)
        model = cls.from_config(config) if cls.__name__ == "AutoModel" else cls._from_config(config)
        commit, weights = None, "random-init"
    else:
        try:
            model = cls.from_pretrained(spec.hub_id, revision=revision, dtype=torch_dtype, local_files_only=True)
        except OSError:
            if local_only or spec.is_local:
                raise ModelNotAvailableError(_how_to_get(spec, revision)) from None
            try:
                model = cls.from_pretrained(spec.hub_id, revision=revision, dtype=torch_dtype)
            except OSError:
                raise ModelNotAvailableError(_how_to_get(spec, revision)) from None
        commit = getattr(model.config, "_commit_hash", None)
        weights = "pretrained"
    model = model.to(device=device, dtype=torch_dtype)
    model.eval()  # models start in training mode: router jitter noise and dropout off
    n_experts, top_k = _routing_shape(config, family)
    return LoadedModel(model=model, config=model.config, family=family, n_experts=n_experts, top_k=top_k,
                       weights=weights, commit_hash=commit, dtype=dtype, device=str(device))


def _load_config(spec: ModelSpec, revision: str | None, local_only: bool):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(spec.hub_id, revision=revision, local_files_only=True)
    except (OSError, ValueError):
        if local_only or spec.is_local:
            raise ModelNotAvailableError(_how_to_get(spec, revision)) from None
    try:
        return AutoConfig.from_pretrained(spec.hub_id, revision=revision)
    except (OSError, ValueError):
        raise ModelNotAvailableError(_how_to_get(spec, revision)) from None


def config_json(config) -> str:
    """The configuration as canonical JSON (for provenance)."""
    return json.dumps(config.to_dict(), sort_keys=True, default=str)
