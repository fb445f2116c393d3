"""Everything an extraction run checks and prepares before it creates any state.

:func:`prepare` validates every argument, reads the corpus, loads the configuration, the tokenizer
and the model (stopping on missing or unexpected weights), finds the MoE layers to record, and
builds the provenance. Only then does :func:`~ising_moe.extract.run.extract` create the staging
directory, so a user error never leaves anything behind and the corrected command starts clean.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._util import as_int
from .._version import __version__
from ..errors import InvalidParameterError, OutputNotWritableError
from ..outputs import check_target
from ..io import to_json
from .positions import check_positions
from .registry import ModelSpec, default_output, resolve_model

log = logging.getLogger(__name__)

__all__ = ["Job", "check_arguments", "prepare"]

DTYPES = ("bf16", "fp16", "fp32")
#: the ``weights`` label of a checkpoint run with --allow-missing-weights that lacked some weights
PARTLY_RANDOM = "partly-random"


@dataclass
class Job:
    """A validated extraction: inputs, loaded model, capture (hooks not yet attached), provenance."""

    spec: ModelSpec
    output: Path
    token_ids: np.ndarray
    mask: np.ndarray
    document_ids: list[str]
    batches: list[tuple[int, int]]
    loaded: Any
    capture: Any
    tokenizer: Any
    params: dict[str, Any]
    attrs: dict[str, Any]
    device: str
    padding_side: str
    positions: str
    seed: int


def _layers(layers) -> list[int] | None:
    if layers is None:
        return None
    try:
        values = [int(x) for x in layers]
    except (TypeError, ValueError):
        raise InvalidParameterError(f"layers must be integers, got {layers!r}") from None
    if not values:
        raise InvalidParameterError("layers is empty: give at least one MoE layer index, or omit it for all")
    if min(values) < 0:
        raise InvalidParameterError(f"layers must be >= 0, got {min(values)}")
    if len(set(values)) != len(values):
        raise InvalidParameterError(f"layers lists a layer twice: {values}")
    return sorted(values)


def check_arguments(model, *, output=None, layers=None, max_length=512, n_sequences=1000, batch_size=8,
                    dtype=None, device=None, random_init=False, reduced=False, seed=0, packing="concat",
                    padding_side="right", positions="natural", overwrite=False, data_dir=None, **_):
    """The checks that need neither torch nor the model (run before starting any process).

    Returns the normalised values as a dict.
    """
    spec = resolve_model(model)
    values = {
        "spec": spec, "layers": _layers(layers),
        "max_length": as_int(max_length, "max_length", minimum=2),
        "n_sequences": as_int(n_sequences, "n_sequences", minimum=1),
        "batch_size": as_int(batch_size, "batch_size", minimum=1),
        "seed": as_int(seed, "seed", minimum=0),
        "positions": check_positions(positions, spec.family),
    }
    if packing not in ("concat", "windows", "document"):
        raise InvalidParameterError(f"packing must be 'concat', 'windows' or 'document', got {packing!r}")
    if padding_side not in ("right", "left"):
        raise InvalidParameterError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
    _check_padding(padding_side, spec.family)
    if reduced and not (random_init and spec.reduced):
        raise InvalidParameterError("--reduced needs --random-init and a model with a reduced variant (olmoe)")
    if dtype is not None and dtype not in DTYPES:
        raise InvalidParameterError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if device is not None and not (device == "cpu" or device.startswith("cuda")):
        raise InvalidParameterError(f"device must be cpu, cuda or cuda:N, got {device!r}")
    # a local checkpoint directory is named after its folder (not its whole path)
    name = Path(spec.hub_id).name if spec.is_local and spec.alias == spec.hub_id else spec.alias
    if positions != "natural":  # an ablation never takes the natural file's default name
        name += f".positions-{positions}"
    out = Path(output) if output is not None else default_output(name, random_init, reduced, data_dir)
    check_target(out, overwrite)
    parent = next((p for p in out.absolute().parents if p.exists()), None)
    if parent is not None and not _writable(parent):
        raise OutputNotWritableError(f"cannot write in {parent}/ (permission denied): choose another output path "
                                     "(-o/--output) or fix the directory's permissions")
    values["output"] = out
    return values


def _writable(directory: Path) -> bool:
    return os.access(directory, os.W_OK | os.X_OK)


def _check_padding(padding_side: str, family: str | None) -> None:
    if padding_side == "left" and family == "switch_transformers":
        raise InvalidParameterError(
            "--padding-side left changes Switch routing: padding tokens placed before the text take expert "
            "capacity, so tokens are dropped that an unpadded sequence keeps; use --padding-side right (the default)")


def _checkpoint_provenance(spec: ModelSpec, random_init: bool) -> dict[str, Any]:
    """Content hashes of a local checkpoint (a hub checkpoint is identified by its commit)."""
    from .checkpoint import combined_sha256, content_hashes, organism

    if not spec.is_local:
        return {"checkpoint_sha256": "", "checkpoint_files": {}, "organism": None}
    hashes = content_hashes(spec.hub_id, weights=not random_init)
    return {"checkpoint_sha256": combined_sha256(hashes), "checkpoint_files": hashes,
            "organism": None if random_init else organism(spec.hub_id)}


def _subject(spec: ModelSpec, weights: str, family: str, seed: int, org, n_random: int = 0) -> str:
    if weights == PARTLY_RANDOM:
        base = "the model trained here" if org is not None and org["weights"] == "trained-here" else spec.hub_id
        return (f"{spec.alias}: PARTLY RANDOM: {n_random} weight(s) missing from the checkpoint were randomly "
                f"initialised (seed {seed}), the others are those of {base}; not the trained model")
    if org is not None and weights == org["weights"]:
        return org["subject"]
    if weights == "random-init":
        return f"{spec.alias}: random-init weights (seed {seed}) of the {family} configuration; not a trained model"
    return f"{spec.alias}: pretrained weights of {spec.hub_id}"


def prepare(model="switch-8", corpus=None, *, output=None, layers=None, max_length=512, n_sequences=1000,
            batch_size=8, dtype=None, device=None, revision=None, random_init=False, reduced=False, seed=0,
            router_probs=False, hidden_states=False, text_field="text", packing="concat", padding_side="right",
            positions="natural", allow_missing_weights=False, overwrite=False, data_dir=None,
            split=None, rank=None) -> Job:
    """Validate everything and load the model; create nothing on disk (see the module docstring)."""
    import torch

    from .capture import RoutingCapture
    from .corpus import read_corpus
    from .loading import check_versions, config_json, load_model, model_config
    from .tokenize import encode_documents, load_tokenizer

    versions = check_versions()
    v = check_arguments(model, output=output, layers=layers, max_length=max_length, n_sequences=n_sequences,
                        batch_size=batch_size, dtype=dtype, device=device, random_init=random_init,
                        reduced=reduced, seed=seed, packing=packing, padding_side=padding_side,
                        positions=positions, overwrite=overwrite, data_dir=data_dir)
    spec, max_length, seed = v["spec"], v["max_length"], v["seed"]
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidParameterError("--device cuda requested but no CUDA device is available")
    run_device = device
    if rank is not None and rank.sharded and device == "cuda":
        run_device = f"cuda:{rank.local_rank}"  # one model replica per GPU
    dtype = dtype or ("bf16" if device.startswith("cuda") else "fp32")

    text = read_corpus(corpus, text_field, data_dir=data_dir, split=split)
    config = model_config(spec, revision=revision, random_init=random_init, reduced=reduced)
    family = config.model_type
    check_positions(positions, family)
    _check_padding(padding_side, family)
    tokenizer = load_tokenizer(spec.hub_id, revision, config.vocab_size, getattr(config, "eos_token_id", None),
                               getattr(config, "pad_token_id", None), local_only=True)
    token_ids, mask, owner = encode_documents(tokenizer, text.documents, max_length, v["n_sequences"], packing)
    document_ids = [text.document_ids[d] for d in owner]
    if len(token_ids) == 0:
        raise InvalidParameterError("the corpus produced no tokens")
    checkpoint = _checkpoint_provenance(spec, random_init)
    loaded = load_model(spec, config, revision=revision, dtype=dtype, device=run_device, random_init=random_init,
                        seed=seed, allow_missing_weights=allow_missing_weights)
    org = checkpoint["organism"]
    if org is not None and not random_init:
        loaded.weights = org["weights"]
    if loaded.random_weights and not random_init:  # --allow-missing-weights: neither trained nor pretrained
        loaded.weights = PARTLY_RANDOM
    capture = RoutingCapture(loaded.model, loaded.family, v["layers"], router_probs, hidden_states)
    capture.check_finite()
    # warnings after every check that can stop the run: an error is then one line
    if getattr(tokenizer, "warning", None):
        log.warning("%s", tokenizer.warning)
    if loaded.random_weights:
        log.warning("%d weights missing from %s were randomly initialised (seed %d): %s", len(loaded.random_weights),
                    spec.hub_id, seed, ", ".join(loaded.random_weights[:3])
                    + (f" and {len(loaded.random_weights) - 3} more" if len(loaded.random_weights) > 3 else ""))
    if len(token_ids) < v["n_sequences"]:
        log.warning("the corpus holds %d sequences of %d tokens, fewer than the %d requested",
                    len(token_ids), max_length, v["n_sequences"])
    n_total = len(token_ids)
    bs = v["batch_size"]

    params = {
        "model": spec.alias, "model_id": spec.hub_id, "revision": revision, "random_init": random_init,
        "reduced": reduced, "seed": seed, "corpus": text.name, "corpus_sha256": text.sha256,
        "text_field": text_field, "split": split, "packing": packing, "max_length": max_length,
        "n_sequences_requested": v["n_sequences"], "n_sequences": n_total, "batch_size": bs,
        "dtype": dtype, "device": device, "layers": v["layers"],
        "router_probs": router_probs, "hidden_states": hidden_states, "padding_side": padding_side,
        "tokenizer": tokenizer.name, "torch_version": versions["torch"],
        "transformers_version": versions["transformers"], "ising_moe_version": __version__,
        "checkpoint_sha256": checkpoint["checkpoint_sha256"], "positions": positions,
        "allow_missing_weights": allow_missing_weights,
    }
    attrs = {
        "model_id": spec.hub_id, "model_alias": spec.alias, "family": loaded.family,
        "revision": revision or ("local" if spec.is_local else "main"), "commit_hash": loaded.commit_hash or "",
        "checkpoint_sha256": checkpoint["checkpoint_sha256"],
        "checkpoint_files": to_json(checkpoint["checkpoint_files"]),
        "weights": loaded.weights,
        "subject": _subject(spec, loaded.weights, loaded.family, seed, org, len(loaded.random_weights)),
        "random_weights": to_json(loaded.random_weights), "unexpected_weights": to_json(loaded.unexpected_weights),
        "reduced": to_json(spec.reduced) if reduced else "",
        "config": config_json(loaded.config), "n_experts": loaded.n_experts, "top_k": loaded.top_k,
        "dtype": dtype, "device": device, "torch_version": versions["torch"],
        "transformers_version": versions["transformers"], "corpus": text.name,
        "corpus_sha256": text.sha256, "tokenizer": tokenizer.name, "max_length": max_length,
        "positions": positions,
        # Switch is an encoder-decoder: only the encoder runs, on the corpus text; the decoder's MoE
        # layers would route decoder inputs (targets), which extraction has none of
        "stack": "encoder" if loaded.family == "switch_transformers" else "decoder",
    }
    if org is not None:
        attrs["train_log_sha256"] = org["train_log_sha256"]
        attrs["train_corpus_sha256"] = org["corpus_sha256"]
        attrs["train_tokens"] = org["tokens"]
        attrs["weights_verified"] = org["weights_verified"]
    if loaded.family == "switch_transformers":
        attrs["expert_capacity"] = int(loaded.config.expert_capacity)
    batches = [(start, min(start + bs, n_total)) for start in range(0, n_total, bs)]
    return Job(spec=spec, output=v["output"], token_ids=token_ids, mask=mask, document_ids=document_ids,
               batches=batches, loaded=loaded,
               capture=capture, tokenizer=tokenizer, params=params, attrs=attrs, device=run_device,
               padding_side=padding_side, positions=positions, seed=seed)
