"""The extraction job: corpus → token windows → model forward passes → ``experts`` HDF5 file.

Resumable and atomic: each batch's routing is staged as one chunk (:class:`~ising_moe.io.ChunkStore`);
a run killed at any moment and restarted with the same command skips the finished batches and
ends with the same file as an uninterrupted run (the creation time is that of the first start).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._util import as_int
from .._version import __version__
from ..errors import InvalidParameterError
from ..io import ChunkStore, atomic_h5, to_json, write_array
from .registry import default_output, resolve_model
from .corpus import read_corpus
from .tokenize import encode_documents, load_tokenizer

log = logging.getLogger(__name__)

__all__ = ["extract", "ExtractionResult"]

_DTYPES = ("bf16", "fp16", "fp32")


@dataclass(frozen=True)
class ExtractionResult:
    """Summary of an extraction run."""

    path: Path
    model_id: str
    weights: str
    n_sequences: int
    n_tokens: int
    layers: list[int]
    n_experts: int
    top_k: int
    tokenizer: str
    drop_fraction: list[float] | None
    resumed: bool


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def extract(model: str = "switch-8", corpus=None, *, output=None, layers=None, max_length: int = 512,
            n_sequences: int = 1000, batch_size: int = 8, dtype: str | None = None, device: str | None = None,
            revision: str | None = None, random_init: bool = False, reduced: bool = False, seed: int = 0,
            router_probs: bool = False, hidden_states: bool = False, text_field: str = "text",
            packing: str = "concat", padding_side: str = "right", overwrite: bool = False,
            progress: bool = True) -> ExtractionResult:
    """Run a MoE model over a corpus and store the top-k expert ids of every token.

    Parameters
    ----------
    model : str
        Alias (``switch-8``, ``olmoe``, ...), hub id or local checkpoint directory.
    corpus : path-like, optional
        Text file, directory or JSONL (default: the shipped corpus).
    output : path-like, optional
        Default ``data/<alias>.h5`` (``.random-init[-reduced].h5`` for random weights).
    layers : sequence of int, optional
        MoE block indices to record (default all).
    max_length, n_sequences, batch_size : int
        Window length in tokens, number of windows, windows per forward pass.
    dtype : {"bf16", "fp16", "fp32"}, optional
        Default bf16 on GPU, fp32 on CPU.
    device : str, optional
        Default ``cuda`` when available.
    revision : str, optional
    random_init, reduced : bool
        Random weights from the real configuration (seeded), optionally the reduced variant.
    seed : int
        Seed of the random weights (recorded in any case).
    router_probs, hidden_states : bool
        Also store the chosen experts' probabilities and router entropies / the router inputs.
    text_field : str
        Field of JSONL records holding the text.
    packing : {"concat", "document"}
        Consecutive full windows of the concatenated corpus, or one padded sequence per document.
    padding_side : {"right", "left"}
        Where padding goes in a batch (decoder models get position ids from the mask either way;
        Switch capacity counts padding, so right padding matches an unpadded sequence).
    overwrite : bool
        Replace an existing output and discard an interrupted run's partial work.
    """
    import torch
    from tqdm.auto import tqdm

    from .capture import RoutingCapture
    from .loading import check_versions, config_json, load_model, model_config

    spec = resolve_model(model)
    versions = check_versions()
    max_length = as_int(max_length, "max_length", minimum=2)
    n_sequences = as_int(n_sequences, "n_sequences", minimum=1)
    batch_size = as_int(batch_size, "batch_size", minimum=1)
    seed = as_int(seed, "seed", minimum=0)
    if packing not in ("concat", "document"):
        raise InvalidParameterError(f"packing must be 'concat' or 'document', got {packing!r}")
    if padding_side not in ("right", "left"):
        raise InvalidParameterError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
    if reduced and not (random_init and spec.reduced):
        raise InvalidParameterError("--reduced needs --random-init and a model with a reduced variant (olmoe)")
    device = device or _default_device()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidParameterError("--device cuda requested but no CUDA device is available")
    dtype = dtype or ("bf16" if device.startswith("cuda") else "fp32")
    if dtype not in _DTYPES:
        raise InvalidParameterError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
    output = Path(output) if output is not None else default_output(spec.alias, random_init, reduced)
    if output.exists() and not overwrite:
        from ..errors import OutputExistsError

        raise OutputExistsError(f"{output} exists: pass --overwrite to replace it")

    text = read_corpus(corpus, text_field)
    config = model_config(spec, revision=revision, random_init=random_init, reduced=reduced)
    tokenizer = load_tokenizer(spec.hub_id, revision, config.vocab_size, getattr(config, "eos_token_id", None),
                               getattr(config, "pad_token_id", None), local_only=True)
    token_ids, mask = encode_documents(tokenizer, text.documents, max_length, n_sequences, packing)
    if len(token_ids) == 0:
        raise InvalidParameterError("the corpus produced no tokens")
    if len(token_ids) < n_sequences:
        log.warning("the corpus holds %d sequences of %d tokens, fewer than the %d requested",
                    len(token_ids), max_length, n_sequences)
    n_total = len(token_ids)

    params = {
        "model": spec.alias, "model_id": spec.hub_id, "revision": revision, "random_init": random_init,
        "reduced": reduced, "seed": seed, "corpus": text.name, "corpus_sha256": text.sha256,
        "text_field": text_field, "packing": packing, "max_length": max_length,
        "n_sequences_requested": n_sequences, "n_sequences": n_total, "batch_size": batch_size,
        "dtype": dtype, "device": device, "layers": None if layers is None else sorted(int(x) for x in layers),
        "router_probs": router_probs, "hidden_states": hidden_states, "padding_side": padding_side,
        "tokenizer": tokenizer.name, "torch_version": versions["torch"],
        "transformers_version": versions["transformers"], "ising_moe_version": __version__,
    }
    store = ChunkStore(output, "experts", params).open(overwrite=overwrite)
    batches = [(start, min(start + batch_size, n_total)) for start in range(0, n_total, batch_size)]
    todo = [b for b in range(len(batches)) if b not in store.done()]

    loaded = load_model(spec, config, revision=revision, dtype=dtype, device=device, random_init=random_init,
                        seed=seed)
    decoder = loaded.family != "switch_transformers"
    done_tokens = int(sum(mask[s:e].sum() for b, (s, e) in enumerate(batches) if b not in todo))
    with RoutingCapture(loaded.model, loaded.family, layers, router_probs, hidden_states) as capture, \
            torch.inference_mode(), \
            tqdm(total=int(mask.sum()), initial=done_tokens, unit="tok", unit_scale=True,
                 desc=f"extract {spec.alias}", disable=not progress or None) as bar:
        for b in todo:
            start, stop = batches[b]
            ids, att = _pad(token_ids[start:stop], mask[start:stop], padding_side, tokenizer.pad_token_id or 0)
            inputs = {"input_ids": torch.from_numpy(ids).long().to(device),
                      "attention_mask": torch.from_numpy(att).long().to(device)}
            if decoder:
                pos = np.clip(np.cumsum(att, axis=1) - 1, 0, None)
                inputs["position_ids"] = torch.from_numpy(pos).long().to(device)
            capture.reset()
            loaded.model(**inputs)
            arrays = capture.collect(stop - start, max_length)
            if padding_side == "left":
                arrays = {k: _unpad_left(v, mask[start:stop]) for k, v in arrays.items()}
            store.write(b, arrays)
            bar.update(int(mask[start:stop].sum()))

    attrs = {
        "model_id": spec.hub_id, "model_alias": spec.alias, "family": loaded.family,
        "revision": revision or "main", "commit_hash": loaded.commit_hash or "",
        "weights": loaded.weights, "reduced": to_json(spec.reduced) if reduced else "",
        "config": config_json(loaded.config), "n_experts": loaded.n_experts, "top_k": loaded.top_k,
        "dtype": dtype, "device": device, "torch_version": versions["torch"],
        "transformers_version": versions["transformers"], "corpus": text.name,
        "corpus_sha256": text.sha256, "tokenizer": tokenizer.name, "max_length": max_length,
    }
    if loaded.family == "switch_transformers":
        attrs["expert_capacity"] = int(loaded.config.expert_capacity)
    result = _assemble(store, output, batches, token_ids, mask, capture.layers, loaded, attrs, params, seed,
                       overwrite)
    store.remove()
    return ExtractionResult(
        path=output, model_id=spec.hub_id, weights=loaded.weights, n_sequences=n_total,
        n_tokens=int(mask.sum()), layers=list(capture.layers), n_experts=loaded.n_experts,
        top_k=loaded.top_k, tokenizer=tokenizer.name, drop_fraction=result, resumed=store.resumed)


def _pad(ids, att, side, pad_id):
    """Move each row's valid tokens to the requested side (rows are stored right-padded)."""
    if side == "right":
        return ids, att.astype(np.int64)
    out_ids = np.full_like(ids, pad_id)
    out_att = np.zeros_like(att, dtype=np.int64)
    for r in range(ids.shape[0]):
        n = int(att[r].sum())
        out_ids[r, ids.shape[1] - n:] = ids[r, :n]
        out_att[r, ids.shape[1] - n:] = 1
    return out_ids, out_att


def _unpad_left(values, mask_right):
    """Bring arrays of a left-padded batch back to the stored right-padded layout."""
    out = np.zeros_like(values)
    length = values.shape[2]
    for r in range(values.shape[0]):
        n = int(mask_right[r].sum())
        out[r, :, :n] = values[r, :, length - n:]
    return out


def _assemble(store, output, batches, token_ids, mask, layers, loaded, attrs, params, seed, overwrite):
    """Concatenate the staged chunks into the final HDF5 file (atomically)."""
    chunks = [store.read(b) for b in range(len(batches))]
    id_dtype = np.uint8 if loaded.n_experts <= 256 else np.uint16
    experts = np.concatenate([c["experts"] for c in chunks]).astype(id_dtype)
    experts[~np.broadcast_to(mask[:, None, :, None], experts.shape)] = 0
    coords = {"layer": np.asarray(layers, dtype=np.int64)}
    drop_fraction = None
    with atomic_h5(output, kind="experts", params=params, seed=seed, overwrite=overwrite,
                   created=store.created, attrs=attrs) as f:
        write_array(f, "experts", experts, ("sequence", "layer", "position", "rank"), coords)
        write_array(f, "mask", mask, ("sequence", "position"))
        write_array(f, "token_ids", token_ids, ("sequence", "position"))
        if "dropped" in chunks[0]:
            dropped = np.concatenate([c["dropped"] for c in chunks]) & mask[:, None, :]
            write_array(f, "dropped", dropped, ("sequence", "layer", "position"), coords)
            drop_fraction = (dropped.sum(axis=(0, 2)) / max(1, mask.sum())).tolist()
        for name, dims in (("router_probs", ("sequence", "layer", "position", "rank")),
                           ("router_entropy", ("sequence", "layer", "position")),
                           ("hidden_states", ("sequence", "layer", "position", "hidden"))):
            if name in chunks[0]:
                write_array(f, name, np.concatenate([c[name] for c in chunks]), dims, coords)
    return drop_fraction
