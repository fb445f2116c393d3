"""Import Megatron-core router traces (``--moe-routing-trace-path``).

What Megatron writes
--------------------
Checked against NVIDIA/Megatron-LM ``megatron/core/transformer/moe/router_trace.py`` (added in
commit c1560d9, read at d98e8a6) and ``examples/inference/README.md``: with
``--moe-routing-trace-path DIR`` (training and inference), every rank writes
``DIR/router_trace_rank<N>.jsonl``, one JSON object per router call::

    {"step": 0, "stage": "pre_dispatch", "block": "decoder", "layer": 3, "rank": 0,
     "num_tokens": 128, "topk": 8, "top_indices": [[12, 45, ...], ...]}

``top_indices`` is ``num_tokens`` rows of ``topk`` expert ids, in the router's rank order; ``layer``
comes from the router's module name ``decoder.layers.<n>``. Multi-token-prediction heads write
``"block": "mtp"`` records with an extra ``mtp_idx``. Optional sidecars (``hs_offset``,
``logit_offset``, ...) are ignored.

How sequences are rebuilt
-------------------------
The router sees a micro-batch flattened from Megatron's ``[sequence, batch]`` layout, so token
``t`` of a record is position ``t // B`` of micro-batch row ``t % B`` (``B = micro_batch_size``,
default 1). Records are grouped by ``(rank, step)``; within a group the ``j``-th record of each
layer forms forward pass ``j`` (training steps run several micro-batches), and every layer of a pass
must have the same ``num_tokens``. Each pass gives ``B`` sequences starting at position 0;
``layer`` values label the layer axis.

Ambiguities, and what the importer does
---------------------------------------
- The trace records neither the micro-batch size nor request boundaries: pass
  ``micro_batch_size`` for training traces. Inference steps batch several requests (and decode
  steps hold one token per request), which the trace cannot separate: such records become one
  sequence per step, meaningful only for one request at a time.
- Sequence / context parallelism split a sequence across ranks (context parallelism out of
  order); positions are then wrong. Tensor-parallel ranks trace the same tokens: pass one rank's file.
- With pipeline parallelism each rank holds other layers; layer sets must agree ("ragged
  layers"), so import one pipeline stage at a time.
- Activation recomputation re-runs the router and duplicates records: the duplicates show up as
  extra passes.
- ``mtp`` records are skipped (counted in ``import_notes``); ``n_experts`` is not recorded
  (pass ``--n-experts``).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ..data import ExpertSequences
from ..errors import DataFormatError, InvalidParameterError
from .assemble import as_id_array, build_sequences, describe_sources, pad_sequences, read_json_records, source_paths

__all__ = ["read_megatron"]

_KEYS = ("step", "layer", "rank", "topk", "top_indices")


def _record_indices(record, label: str) -> tuple[tuple, int, np.ndarray] | None:
    """``((rank, step), layer, top_indices (num_tokens, topk))`` of a decoder record, None for MTP."""
    if not isinstance(record, dict):
        raise DataFormatError(f"{label}: expected a JSON object per router call")
    missing = [k for k in _KEYS if k not in record]
    if missing:
        raise DataFormatError(f"{label}: missing key(s) {', '.join(missing)}: not a Megatron router trace")
    if record.get("block", "decoder") != "decoder" or "mtp_idx" in record:
        return None
    try:
        key = (int(record["rank"]), int(record["step"]))
        layer = int(record["layer"])
        topk = int(record["topk"])
    except (TypeError, ValueError):
        raise DataFormatError(f"{label}: step, layer, rank and topk must be integers") from None
    indices = as_id_array(record["top_indices"], f"{label} top_indices", ndim=2)
    if indices.shape[0] and indices.shape[1] != topk:
        raise DataFormatError(f"{label}: top_indices rows have {indices.shape[1]} ids, topk says {topk}")
    if "num_tokens" in record and int(record["num_tokens"]) != indices.shape[0]:
        raise DataFormatError(f"{label}: top_indices has {indices.shape[0]} rows, num_tokens says "
                              f"{record['num_tokens']}")
    return key, layer, indices


def read_megatron(source, *, n_experts: int | None = None, model_id: str | None = None,
                  micro_batch_size: int = 1) -> ExpertSequences:
    """Read Megatron-core router traces (JSON Lines) into expert sequences.

    Parameters
    ----------
    source : path-like
        A ``router_trace_rank<N>.jsonl`` file, or the trace directory (``router_trace_rank*.jsonl``).
    n_experts : int, optional
        Number of routed experts (default: the largest id + 1, recorded as inferred).
    model_id : str, optional
    micro_batch_size : int, default 1
        Rows ``B`` of the micro-batch each router call saw (``num_tokens = seq_length * B``).

    Returns
    -------
    ExpertSequences
        ``B`` sequences per forward pass, in (rank, step, pass, row) order.
    """
    if isinstance(micro_batch_size, bool) or not isinstance(micro_batch_size, (int, np.integer)) \
            or micro_batch_size < 1:
        raise InvalidParameterError(f"micro_batch_size must be a positive integer, got {micro_batch_size!r}")
    paths = source_paths(source, "router_trace_rank*.jsonl", "Megatron router trace")
    where = str(Path(source))
    groups: dict[tuple, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    first_label: dict[tuple, str] = {}
    skipped_mtp = 0
    for path in paths:
        for label, record in read_json_records(path):
            found = _record_indices(record, label)
            if found is None:
                skipped_mtp += 1
                continue
            key, layer, indices = found
            groups[key][layer].append(indices)
            first_label.setdefault(key, label)
    if not groups:
        raise DataFormatError(f"{where}: no decoder router records")
    layer_set = None
    tokens, labels = [], []
    for key in sorted(groups):
        by_layer = groups[key]
        label = f"{first_label[key]} (rank {key[0]}, step {key[1]})"
        layers = sorted(by_layer)
        if layer_set is None:
            layer_set = layers
        elif layers != layer_set:
            raise DataFormatError(
                f"{where}: ragged layers: rank {key[0]} step {key[1]} traced layers {layers}, the first "
                f"step {layer_set} (pipeline-parallel ranks hold different layers: import one rank)")
        counts = {len(by_layer[layer]) for layer in layers}
        if len(counts) != 1:
            raise DataFormatError(f"{label}: ragged layers: layers were traced a different number of times "
                                  f"({ {layer: len(by_layer[layer]) for layer in layers} })")
        for j in range(counts.pop()):
            calls = [by_layer[layer][j] for layer in layers]
            n_tok = {c.shape[0] for c in calls}
            k_set = {c.shape[1] for c in calls if c.shape[0]}
            if len(n_tok) != 1 or len(k_set) > 1:
                raise DataFormatError(f"{label} pass {j}: ragged layers: layers saw {sorted(n_tok)} tokens "
                                      f"with top-k {sorted(k_set)}")
            n = n_tok.pop()
            if n == 0:
                continue
            if n % micro_batch_size:
                raise DataFormatError(f"{label} pass {j}: {n} tokens is not a multiple of "
                                      f"micro_batch_size = {micro_batch_size}")
            stacked = np.stack(calls, axis=1)  # (num_tokens, n_layers, topk), token t = s * B + b
            for row in range(micro_batch_size):
                tokens.append(stacked[row::micro_batch_size])
                labels.append(f"{label} pass {j} row {row}")
    if not tokens:
        raise DataFormatError(f"{where}: every router record is empty")
    experts, mask = pad_sequences(tokens, where, labels=labels)
    notes = {"mtp_records_skipped": skipped_mtp, "micro_batch_size": int(micro_batch_size),
             "token_order": "[sequence, batch] flattened (Megatron layout)"}
    return build_sequences(experts, mask, where=where, source_format="megatron", sources=describe_sources(paths),
                           layers=np.asarray(layer_set, dtype=np.int64), n_experts=n_experts,
                           model_id=model_id, notes=notes)
