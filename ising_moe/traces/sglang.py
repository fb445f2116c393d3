"""Import SGLang's per-token expert distribution recorder dumps.

What SGLang writes
------------------
Launched with ``--expert-distribution-recorder-mode per_token`` and driven through the
``/start_expert_distribution_record``, ``/stop_expert_distribution_record`` and
``/dump_expert_distribution_record`` endpoints, each rank writes
``$SGLANG_EXPERT_DISTRIBUTION_RECORDER_DIR/expert_distribution_recorder_<time>_<rank>.pt`` with
``torch.save``. Checked against sgl-project/sglang
``python/sglang/srt/eplb/expert_distribution.py`` (commit 02295fe; ``_DetailSinglePassGatherer``,
``_DetailAccumulator.dump``) and ``python/sglang/srt/layers/moe/topk.py`` (``select_experts``):

- the archive holds ``{"records": [...], "last_physical_to_logical_map": int tensor
  (n_layers, n_physical_experts)}``;
- one record per forward pass: ``forward_pass_id``, ``rank``, ``input_ids`` and ``positions``
  (lists, one entry per token of the batch), ``extend_seq_lens`` (tokens of each request in an
  extend/prefill pass; ``None`` in decode passes), ``forward_mode``, and ``topk_ids_of_layer``, an
  int32 tensor ``(n_layers, n_tokens, 8)``: a fixed 8-column buffer reset to -1, into which each MoE
  layer writes its ``topk_ids``; dense layers stay -1;
- ``topk_ids`` are *physical* expert ids (after ``topk_ids_logical_to_physical`` when expert
  parallel load balancing is on); ``last_physical_to_logical_map`` maps them back.

How sequences are rebuilt, and what cannot be
---------------------------------------------
Records carry no request ids (upstream leaves ``rids`` as a TODO), so only extend passes can be
cut into requests: each ``extend_seq_lens`` segment is one sequence, placed at its absolute
``positions`` (a chunk of a chunked prefill, or a prompt after a prefix-cache hit, starts past 0;
earlier positions are masked). Decode passes (one token per running request, requests
unidentified) and segments shorter than ``min_segment_length`` (2; decode tokens in mixed batches)
are skipped and counted in ``import_notes``. Layers that stay -1 everywhere are dense and dropped;
top-k columns that stay -1 everywhere are trimmed (top-k < 8). Physical ids are mapped to logical
ids through ``last_physical_to_logical_map`` ("last": it may have changed during recording if the
load balancer rebalanced). SGLang notes the data is wrong with shared-expert fusion on: disable it.
The reader is torch-free (:mod:`ising_moe.traces._torch_zip`) and loads no pickled code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import ExpertSequences
from ..errors import DataFormatError
from ._torch_zip import load_torch_zip
from .assemble import (
    as_id_array,
    build_sequences,
    describe_sources,
    drop_unrouted_layers,
    pad_sequences,
    source_paths,
    trim_unused_ranks,
)

__all__ = ["read_sglang"]

_RECORD_KEYS = ("positions", "topk_ids_of_layer")


def _segments(record, label: str, min_length: int):
    """Yield ``(start_position, tokens (n, n_layers, 8))`` per extend segment; None for decode passes."""
    if not isinstance(record, dict):
        raise DataFormatError(f"{label}: expected a dict per forward pass")
    missing = [k for k in _RECORD_KEYS if k not in record]
    if missing:
        raise DataFormatError(f"{label}: missing key(s) {', '.join(missing)}")
    topk = as_id_array(record["topk_ids_of_layer"], f"{label} topk_ids_of_layer", ndim=3)
    positions = as_id_array(record["positions"], f"{label} positions", ndim=1)
    n_tokens = len(positions)
    if topk.shape[1] != n_tokens:
        raise DataFormatError(f"{label}: topk_ids_of_layer covers {topk.shape[1]} tokens, positions {n_tokens}")
    lengths = record.get("extend_seq_lens")
    if lengths is None:
        return None
    lengths = as_id_array(lengths, f"{label} extend_seq_lens", ndim=1)
    if lengths.min(initial=0) < 0 or lengths.sum() != n_tokens:
        raise DataFormatError(f"{label}: extend_seq_lens {lengths.tolist()[:8]} do not add up to {n_tokens} tokens")
    out, short, stop = [], 0, 0
    for length in lengths.tolist():
        start, stop = stop, stop + length
        if length < min_length:
            short += 1
            continue
        pos = positions[start:stop]
        if np.any(np.diff(pos) != 1):
            raise DataFormatError(f"{label}: positions of one extend segment are not consecutive")
        out.append((int(pos[0]), topk[:, start:stop].transpose(1, 0, 2)))
    return out, short


def _physical_to_logical(tokens: np.ndarray, mapping: np.ndarray | None, where: str) -> np.ndarray:
    """Map physical expert ids (>= 0) to logical ids layer by layer; -1 stays -1."""
    if mapping is None:
        return tokens
    n_layers = tokens.shape[1]
    if mapping.shape[0] != n_layers:
        raise DataFormatError(f"{where}: last_physical_to_logical_map has {mapping.shape[0]} layers, "
                              f"records {n_layers}")
    if tokens.max(initial=-1) >= mapping.shape[1]:
        raise DataFormatError(f"{where}: physical expert id {tokens.max()} >= {mapping.shape[1]} physical experts")
    out = tokens.copy()
    for layer in range(n_layers):
        ids = tokens[:, layer]
        out[:, layer] = np.where(ids >= 0, mapping[layer][np.clip(ids, 0, None)], ids)
    return out


def read_sglang(source, *, n_experts: int | None = None, model_id: str | None = None,
                min_segment_length: int = 2) -> ExpertSequences:
    """Read SGLang ``per_token`` expert-distribution dumps into expert sequences.

    Parameters
    ----------
    source : path-like
        One ``.pt`` dump, or a directory of them (``*.pt``, read in name order; with tensor
        parallelism every rank records the same tokens, so pass one rank's files).
    n_experts : int, optional
        Number of logical experts (default: ``max + 1`` of the physical-to-logical map).
    model_id : str, optional
    min_segment_length : int, default 2
        Shorter extend segments are skipped (decode tokens in mixed batches).

    Returns
    -------
    ExpertSequences
        One sequence per extend segment, at its absolute positions.
    """
    paths = source_paths(source, "*.pt", "SGLang .pt dump")
    where = str(Path(source))
    tokens, starts, labels, mapping = [], [], [], None
    decode_passes = short_segments = 0
    for path in paths:
        dump = load_torch_zip(path)
        if not isinstance(dump, dict) or "records" not in dump:
            keys = sorted(dump) if isinstance(dump, dict) else type(dump).__name__
            raise DataFormatError(
                f"{path}: missing key 'records' (found {keys}): not a per_token dump; launch SGLang "
                "with --expert-distribution-recorder-mode per_token")
        if dump.get("last_physical_to_logical_map") is not None:
            this = as_id_array(dump["last_physical_to_logical_map"], f"{path} last_physical_to_logical_map", ndim=2)
            if mapping is not None and not np.array_equal(mapping, this):
                raise DataFormatError(f"{path}: physical-to-logical map differs from the other dumps'")
            mapping = this
        if not isinstance(dump["records"], list):
            raise DataFormatError(f"{path}: 'records' must be a list")
        for i, record in enumerate(dump["records"]):
            label = f"{path} record {i}"
            found = _segments(record, label, min_segment_length)
            if found is None:
                decode_passes += 1
                continue
            segments, short = found
            short_segments += short
            for k, (start, seq) in enumerate(segments):
                tokens.append(seq)
                starts.append(start)
                labels.append(f"{label} segment {k}")
    if not tokens:
        raise DataFormatError(f"{where}: no extend (prefill) segment of >= {min_segment_length} tokens; "
                              f"{decode_passes} decode pass(es) cannot be assigned to requests")
    tokens = [_physical_to_logical(t, mapping, where) for t in tokens]
    experts, mask = pad_sequences(tokens, where, starts=starts, labels=labels)
    layers = np.arange(experts.shape[1], dtype=np.int64)
    experts, layers, dense = drop_unrouted_layers(experts, mask, layers, fill=-1)
    experts = trim_unused_ranks(experts, mask, fill=-1)
    in_map = None if mapping is None or mapping.size == 0 else int(mapping.max()) + 1
    notes = {"decode_passes_skipped": decode_passes, "short_segments_skipped": short_segments,
             "dense_layers_dropped": dense, "physical_to_logical_applied": mapping is not None,
             "positions": "absolute (from the records' positions)"}
    return build_sequences(experts, mask, where=where, source_format="sglang", sources=describe_sources(paths),
                           layers=layers, n_experts=n_experts, n_experts_in_file=in_map, model_id=model_id,
                           notes=notes)
