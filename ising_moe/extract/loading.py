"""Loading MoE models (pretrained weights, or random init from the real configuration)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from ..errors import (
    DataFormatError,
    MissingDependencyError,
    ModelNotAvailableError,
    UnsupportedModelError,
    require,
)
from .checkpoint import download_command, hub_reachable, inspect_checkpoint, offline_mode
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
    random_weights: list[str] = field(default_factory=list)  # missing from the checkpoint: random init
    unexpected_weights: list[str] = field(default_factory=list)  # in the checkpoint, unused


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
    return (
        f"weights of {spec.hub_id}{'@' + revision if revision else ''} are not in the local Hugging Face "
        f"cache (HF_HOME={cache}) and cannot be downloaded here. On a machine with internet run "
        f"`{download_command(spec.hub_id, revision)}` and copy the cache, or pass a local checkpoint "
        "directory with --model PATH; --random-init builds the model with random weights instead"
    )


def _hub_unreachable(spec: ModelSpec, revision: str | None) -> str:
    from huggingface_hub import constants

    return (f"{spec.hub_id} is not in the local Hugging Face cache and the hub ({constants.ENDPOINT}) cannot be "
            f"reached: run `{download_command(spec.hub_id, revision)}` where there is internet and copy "
            "the cache (HF_HOME), pass a local checkpoint directory with --model PATH, or use --random-init")


@contextlib.contextmanager
def _quiet_transformers():
    """Silence transformers' load report and progress bars (ising-moe checks the loading info
    itself and stops on any problem); restore the previous settings afterwards."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


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
        local_only = offline_mode()
    if random_init and spec.config:
        config = build_config(spec, reduced)
    else:
        if spec.is_local:
            values = inspect_checkpoint(spec.hub_id, need_weights=not random_init)
            _family_of(SimpleNamespace(model_type=values["model_type"]))
        config = _load_config(spec, revision, local_only)
    _family_of(config)
    return config


def load_model(spec: ModelSpec, config, *, revision: str | None = None, dtype: str = "fp32",
               device: str = "cpu", random_init: bool = False, seed: int = 0,
               local_only: bool | None = None, allow_missing_weights: bool = False) -> LoadedModel:
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
    seed : int
        Seed of the random weights (and of any weight the checkpoint lacks).
    local_only : bool, optional
        Only look in the local cache (default: when ``HF_HUB_OFFLINE`` is set).
    allow_missing_weights : bool
        Run even when the checkpoint lacks weights of the model (they are then randomly
        initialised, seeded, and listed in :attr:`LoadedModel.random_weights`) or holds weights
        the model does not use. By default any such mismatch stops the run.

    Raises
    ------
    ModelNotAvailableError
        Weights are missing locally and cannot be downloaded (the message says how to get them).
    DataFormatError
        Damaged weight files, or weights that do not match the model (the keys are named).
    UnsupportedModelError
        The architecture is not one whose router ising-moe reads.
    """
    import torch

    if local_only is None:
        local_only = offline_mode()
    family = _family_of(config)
    torch_dtype = _torch_dtype(dtype)
    cls = _model_class(family)
    torch.manual_seed(seed)  # random init, and any weight a checkpoint lacks, are reproducible
    missing: list[str] = []
    unexpected: list[str] = []
    if random_init:
        model = cls.from_config(config) if cls.__name__ == "AutoModel" else cls._from_config(config)
        commit, weights = None, "random-init"
    else:
        if spec.is_local:
            inspect_checkpoint(spec.hub_id, need_weights=True)
        model, info = _from_pretrained(cls, spec, revision, torch_dtype, local_only)
        missing, unexpected, reshaped = _weight_mismatches(info, family)
        fused = list(reshaped)  # a fused experts tensor short of an expert is re-initialised whole
        missing, reshaped = _missing_experts(spec, missing, reshaped, info)
        if (missing or unexpected or reshaped) and not allow_missing_weights:
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("reshaped", reshaped)):
                if keys:
                    log.info("%s weights of %s (%d): %s", what, spec.hub_id, len(keys), ", ".join(keys))
            raise DataFormatError(_mismatch_message(spec, missing, unexpected, reshaped))
        missing = sorted(set(missing) | set(reshaped) | set(fused))  # all were randomly initialised
        # (reported by the caller once every check has passed: a warning before an error would make two lines)
        commit = getattr(model.config, "_commit_hash", None)
        weights = "pretrained"
    model = model.to(device=device, dtype=torch_dtype)
    model.eval()  # models start in training mode: router jitter noise and dropout off
    n_experts, top_k = _routing_shape(config, family)
    return LoadedModel(model=model, config=model.config, family=family, n_experts=n_experts, top_k=top_k,
                       weights=weights, commit_hash=commit, dtype=dtype, device=str(device),
                       random_weights=missing, unexpected_weights=unexpected)


#: weights of a checkpoint that the loaded part of the model does not use, by design: the LM head
#: of a causal LM (the base model is loaded) and the decoder of Switch (its encoder is loaded);
#: rotary frequencies are recomputed from the configuration
_UNUSED_BY_DESIGN = {"switch_transformers": ("decoder.", "lm_head.")}
_UNUSED_DEFAULT = ("lm_head.",)
_RECOMPUTED = ("rotary_emb.inv_freq",)


def _weight_mismatches(info: dict, family: str) -> tuple[list[str], list[str], list[str]]:
    """Checkpoint keys the model lacks (newly initialised), unexpected ones (minus those unused by
    design), and those whose shape differs from the configuration's (also newly initialised)."""
    unused = _UNUSED_BY_DESIGN.get(family, _UNUSED_DEFAULT)
    missing = sorted(str(k) for k in info.get("missing_keys", ()) if not str(k).endswith(_RECOMPUTED))
    reshaped = sorted(str(k[0]) if isinstance(k, (tuple, list)) else str(k) for k in info.get("mismatched_keys", ()))
    unexpected = sorted(k for k in info.get("unexpected_keys", ())
                        if not k.startswith(unused) and not k.endswith(_RECOMPUTED))
    errors = [str(e) for e in info.get("error_msgs", ()) if str(e).strip()]
    if errors:
        raise DataFormatError(f"the weights could not be loaded into the model: {errors[0].splitlines()[0]}")
    return missing, unexpected, reshaped


def _checkpoint_keys(spec: ModelSpec) -> list[str]:
    """Tensor names in a local checkpoint's ``.safetensors`` headers (empty for a hub checkpoint)."""
    import struct
    from pathlib import Path

    if not spec.is_local:
        return []
    keys = []
    for file in sorted(Path(spec.hub_id).glob("*.safetensors")):
        try:
            with open(file, "rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                keys += [k for k in json.loads(fh.read(n)) if k != "__metadata__"]
        except (OSError, ValueError, struct.error):
            continue
    return keys


def _missing_experts(spec: ModelSpec, missing: list[str], reshaped: list[str], info: dict):
    """Report a fused experts tensor that is short of some experts as the missing experts' weights.

    transformers merges the per-expert tensors of a checkpoint (``...experts.3.down_proj.weight``)
    into one fused tensor (``...experts.down_proj``); with one expert's tensor removed the fused one
    has one expert too few, which its loader reports as "another shape". Here it is what it is: a
    missing weight, named as the checkpoint names it where the checkpoint's keys can be read.
    """
    import re

    shapes = {str(k[0]): (tuple(k[1]), tuple(k[2])) for k in info.get("mismatched_keys", ())
              if isinstance(k, (tuple, list)) and len(k) == 3}
    keys = None
    still, found = [], list(missing)
    for name in reshaped:
        have, want = shapes.get(name, ((), ()))
        match = re.match(r"^(?P<prefix>.*)\.experts\.(?P<proj>[a-z_]+)$", name)
        if match is None or not have or len(have) != len(want) or have[0] >= want[0] or have[1:] != want[1:]:
            still.append(name)
            continue
        keys = _checkpoint_keys(spec) if keys is None else keys
        projs = ("gate_proj", "up_proj") if match["proj"] == "gate_up_proj" else (match["proj"],)
        named = []
        for proj in projs:
            pattern = re.compile(rf"^(?:.*\.)?{re.escape(match['prefix'])}\.experts\.(\d+)\.{proj}(?:\.weight)?$")
            present = {int(m.group(1)): k for k in keys if (m := pattern.match(k))}
            if present:
                template = next(iter(present.values()))
                named += [re.sub(rf"experts\.\d+\.{proj}", f"experts.{e}.{proj}", template)
                          for e in range(want[0]) if e not in present]
        found += named or [f"{name} ({want[0] - have[0]} of {want[0]} experts)"]
    return sorted(set(found)), still


def _key_list(keys: list[str], limit: int = 3) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more (-v lists them all)" if len(keys) > limit else "")


def _mismatch_message(spec: ModelSpec, missing: list[str], unexpected: list[str], reshaped: list[str]) -> str:
    parts = []
    if reshaped:
        parts.append(f"{len(reshaped)} weight(s) have another shape than config.json says and would be randomly "
                     f"initialised ({_key_list(reshaped)})")
    if missing:
        parts.append(f"{len(missing)} weight(s) of the model are missing and would be randomly initialised "
                     f"({_key_list(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} weight(s) in the checkpoint are not used by the model "
                     f"({_key_list(unexpected)})")
    return (f"{spec.hub_id} does not match its configuration: {'; '.join(parts)}. The routing would be "
            "wrong: repair the checkpoint, or pass --allow-missing-weights to run anyway (the output then "
            "lists the random weights in its 'random_weights' attribute)")


def _from_pretrained(cls, spec: ModelSpec, revision: str | None, torch_dtype, local_only: bool):
    """``cls.from_pretrained`` with loading info: local cache first, then the hub if reachable."""
    try:
        from safetensors import SafetensorError
    except ImportError:  # pragma: no cover - safetensors is a dependency of transformers
        SafetensorError = OSError  # noqa: N806

    def attempt(local_files_only: bool):
        with _quiet_transformers():
            # mismatched shapes are reported in the loading info (and refused there), not raised
            return cls.from_pretrained(spec.hub_id, revision=revision, dtype=torch_dtype,
                                       local_files_only=local_files_only, output_loading_info=True,
                                       ignore_mismatched_sizes=True)

    try:
        try:
            return attempt(True)
        except OSError:
            if local_only or spec.is_local:
                if spec.is_local:
                    raise
                raise ModelNotAvailableError(_how_to_get(spec, revision)) from None
            if not hub_reachable():
                raise ModelNotAvailableError(_hub_unreachable(spec, revision)) from None
            return attempt(False)
    except (SafetensorError, EOFError, RuntimeError, ValueError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        if isinstance(exc, OSError) and not spec.is_local:
            raise ModelNotAvailableError(_how_to_get(spec, revision)) from None
        raise DataFormatError(f"the weights of {spec.hub_id} cannot be loaded ({type(exc).__name__}: {first}): "
                              "the checkpoint is damaged or does not match its config.json") from None


def _load_config(spec: ModelSpec, revision: str | None, local_only: bool):
    from transformers import AutoConfig

    def attempt(local_files_only: bool):
        with _quiet_transformers():
            return AutoConfig.from_pretrained(spec.hub_id, revision=revision, local_files_only=local_files_only)

    try:
        return attempt(True)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        if spec.is_local:
            detail = (str(exc).strip().splitlines() or [""])[0][:200]
            raise DataFormatError(f"{spec.hub_id}/config.json is not a valid configuration "
                                  f"({type(exc).__name__}: {detail}): repair or replace it") from None
        if local_only:
            raise ModelNotAvailableError(_how_to_get(spec, revision)) from None
    if not hub_reachable():
        raise ModelNotAvailableError(_hub_unreachable(spec, revision))
    try:
        return attempt(False)
    except (OSError, ValueError):
        raise ModelNotAvailableError(_how_to_get(spec, revision)) from None


def config_json(config) -> str:
    """The configuration as canonical JSON (for provenance)."""
    return json.dumps(config.to_dict(), sort_keys=True, default=str)
