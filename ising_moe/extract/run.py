"""The extraction job: corpus → token windows → model forward passes → ``experts`` HDF5 file.

Resumable and atomic: each batch's routing is staged as one chunk (:class:`~ising_moe.io.ChunkStore`);
a run killed at any moment and restarted with the same command skips the finished batches and
ends with the same file as an uninterrupted run (the creation time is that of the first start).
Nothing is created before every argument, the corpus, the checkpoint and the layers have been
checked (:mod:`~ising_moe.extract.job`). Sharded runs (``shards=N`` or ``torchrun``) split the
batches between processes and produce the same file (:mod:`~ising_moe.extract.shard`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._util import as_int
from ..errors import InvalidParameterError, NonFiniteError
from ..data import write_document_ids
from ..io import ChunkStore, atomic_h5, write_array
from .job import check_arguments, prepare
from .positions import position_ids
from .shard import current_rank, process_group, run_sharded, shard_range

log = logging.getLogger(__name__)

__all__ = ["extract", "ExtractionResult"]


@dataclass(frozen=True)
class ExtractionResult:
    """Summary of an extraction run (``rank``/``shards``: this process's place in a sharded run;
    only rank 0 writes the file and knows the drop fractions)."""

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
    positions: str = "natural"
    shards: int = 1
    rank: int = 0


def extract(model: str = "switch-8", corpus=None, *, output=None, layers=None, max_length: int = 512,
            n_sequences: int = 1000, batch_size: int = 8, dtype: str | None = None, device: str | None = None,
            revision: str | None = None, random_init: bool = False, reduced: bool = False, seed: int = 0,
            router_probs: bool = False, hidden_states: bool = False, text_field: str = "text",
            packing: str = "concat", split: str | None = None, padding_side: str = "right",
            positions: str = "natural",
            allow_missing_weights: bool = False, data_dir=None, shards: int = 1, overwrite: bool = False,
            progress: bool = True) -> ExtractionResult:
    """Run a MoE model over a corpus and store the top-k expert ids of every token.

    Parameters
    ----------
    model : str
        Alias (``switch-8``, ``olmoe``, ``olmoe-tiny``, ...), hub id or local checkpoint directory.
    corpus : path-like, optional
        Text file, directory or JSONL (default: the shipped corpus, found beside the installation).
    output : path-like, optional
        Default ``<data_dir>/<alias>.h5`` (``.random-init[-reduced].h5`` for random weights).
    layers : sequence of int, optional
        MoE block indices to record (default all).
    max_length, n_sequences, batch_size : int
        Window length in tokens, number of windows, windows per forward pass.
    dtype : {"bf16", "fp16", "fp32"}, optional
        Default bf16 on GPU, fp32 on CPU.
    device : str, optional
        Default ``cuda`` when available. In a sharded run ``cuda`` means ``cuda:LOCAL_RANK``.
    revision : str, optional
    random_init, reduced : bool
        Random weights from the real configuration (seeded), optionally the reduced variant.
    seed : int
        Seed of the random weights and of the shuffled positions (recorded in any case).
    router_probs, hidden_states : bool
        Also store the chosen experts' probabilities and router entropies / the router inputs.
    text_field : str
        Field of JSONL records holding the text.
    split : str, optional
        Only the JSONL records with this ``split`` field (e.g. ``"validation"``).
    packing : {"concat", "windows", "document"}
        Consecutive full windows of the concatenated corpus (a window may span two documents), windows
        within each document (never spanning two), or one padded sequence per document.
    padding_side : {"right", "left"}
        Where padding goes in a batch (decoder models get position ids from the mask either way).
        Switch refuses ``left``: padding before the text takes expert capacity.
    positions : {"natural", "constant", "shuffled", "reversed"}
        Position ids given to a RoPE model (:mod:`~ising_moe.extract.positions`); Switch accepts
        only ``natural``.
    allow_missing_weights : bool
        Run although the checkpoint lacks weights (randomly initialised with ``seed``) or holds
        unused ones; the file's ``random_weights`` attribute lists them. Default: stop.
    data_dir : path-like, optional
        Where the default output goes and the shipped corpus is looked for first (default
        ``$ISINGMOE_DATA``, else the installation's ``data/``).
    shards : int
        Processes to split the batches between (one model replica each); the file is the same.
        Under ``torchrun`` leave it at 1: the ranks come from the environment.
    overwrite : bool
        Replace an existing output and discard an interrupted run's partial work.
    """
    shards = as_int(shards, "shards", minimum=1)
    rank = current_rank()
    kwargs = dict(model=model, corpus=corpus, output=output, layers=layers, max_length=max_length,
                  n_sequences=n_sequences, batch_size=batch_size, dtype=dtype, device=device, revision=revision,
                  random_init=random_init, reduced=reduced, seed=seed, router_probs=router_probs,
                  hidden_states=hidden_states, text_field=text_field, packing=packing, split=split,
                  padding_side=padding_side, positions=positions, allow_missing_weights=allow_missing_weights,
                  data_dir=data_dir, overwrite=overwrite)
    if shards > 1:
        if rank.sharded:
            raise InvalidParameterError("--shards starts its own processes: do not combine it with torchrun")
        check_arguments(**kwargs)  # fail at once, before starting processes
        return run_sharded(shards, dict(kwargs, progress=progress))
    job = prepare(**kwargs, rank=rank)
    with process_group(rank) as barrier:
        store = ChunkStore(job.output, "experts", job.params)
        if rank.rank == 0:
            store.open(overwrite=overwrite)
        try:
            barrier()  # the staging directory exists (and is checked) before any rank writes to it
            mine = shard_range(len(job.batches), rank.world, rank.rank)
            done = store.done()
            try:
                _run_batches(job, store, [b for b in mine if b not in done], [b for b in mine if b in done],
                             progress and rank.rank == 0, rank)
            except NonFiniteError:
                if rank.rank == 0:  # a rerun would stop the same way: keep nothing
                    store.remove()
                raise
            except BaseException:
                if rank.rank == 0 and not rank.sharded and not store.resumed and not store.done():
                    store.remove()  # failed before its first batch was staged: nothing worth resuming
                raise
            barrier()  # every shard is staged
            drop_fraction = None
            if rank.rank == 0:
                attrs = dict(job.attrs, n_shards=rank.world)
                drop_fraction = _assemble(store, job.output, job.batches, job.token_ids, job.mask,
                                          job.document_ids, job.capture.layers, job.loaded, attrs, job.params, job.seed, overwrite)
                store.remove()
        finally:
            store.close()  # an interrupted run (exception, Ctrl-C) keeps its staged batches, not its lock
    loaded = job.loaded
    return ExtractionResult(
        path=job.output, model_id=job.spec.hub_id, weights=loaded.weights, n_sequences=len(job.token_ids),
        n_tokens=int(job.mask.sum()), layers=list(job.capture.layers), n_experts=loaded.n_experts,
        top_k=loaded.top_k, tokenizer=job.tokenizer.name, drop_fraction=drop_fraction, resumed=store.resumed,
        positions=job.positions, shards=rank.world, rank=rank.rank)


def _run_batches(job, store, todo, done, progress, rank) -> None:
    """Forward passes of the batches ``todo``, each staged as chunk ``b`` (its global batch index)."""
    import torch
    from tqdm.auto import tqdm

    decoder = job.loaded.family != "switch_transformers"
    pad_id = job.tokenizer.pad_token_id or 0
    count = lambda bs: int(sum(job.mask[job.batches[b][0]:job.batches[b][1]].sum() for b in bs))  # noqa: E731
    desc = f"extract {job.spec.alias}" + (f" [shard {rank.rank}/{rank.world}]" if rank.sharded else "")
    with job.capture as capture, torch.inference_mode(), \
            tqdm(total=count(todo) + count(done), initial=count(done), unit="tok", unit_scale=True, desc=desc,
                 disable=not progress or None) as bar:
        for b in todo:
            start, stop = job.batches[b]
            mask = job.mask[start:stop]
            ids, att = _pad(job.token_ids[start:stop], mask, job.padding_side, pad_id)
            inputs = {"input_ids": torch.from_numpy(ids).long().to(job.device),
                      "attention_mask": torch.from_numpy(att).long().to(job.device)}
            if decoder:
                pos = position_ids(att, job.positions, seed=job.seed, first_sequence=start)
                inputs["position_ids"] = torch.from_numpy(pos).long().to(job.device)
            capture.reset()
            job.loaded.model(**inputs)
            arrays = capture.collect(stop - start, ids.shape[1])
            if job.padding_side == "left":
                arrays = {k: _unpad_left(v, mask) for k, v in arrays.items()}
            store.write(b, arrays)
            bar.update(int(mask.sum()))


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


def _assemble(store, output, batches, token_ids, mask, document_ids, layers, loaded, attrs, params, seed, overwrite):
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
        write_document_ids(f, document_ids)
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
