"""The plain long-table layout (Parquet) for routing from any other source, and its writer.

Layout (version 1)
------------------
One row per (token, layer, rank) with integer columns

============ =================================================================
column       meaning
============ =================================================================
``sequence`` sequence id (any integers; sequences are stored in sorted id order)
``position`` token position in its sequence, >= 0
``layer``    the model's block index of the MoE layer
``rank``     0 = the router's first choice, ..., ``top_k - 1``
``expert``   expert id, ``0 <= expert < n_experts``
============ =================================================================

and an optional boolean ``dropped`` column (token dropped by expert capacity, repeated on each
rank's row). Every (sequence, position) present must have exactly one row per layer and rank;
sequences may have different lengths and gaps: missing positions are padding (``mask = False``).
Optional schema metadata ``ising_moe.n_experts``, ``ising_moe.n_sequences``,
``ising_moe.n_positions`` and ``ising_moe.layout_version`` fix the number of experts and the
padded shape (``isingmoe export --format parquet`` writes them, so that a round trip keeps
trailing padding and fully masked sequences).

Needs the optional dependency pyarrow (``pip install 'ising-moe[traces]'``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import ExpertSequences
from ..errors import DataFormatError, require
from .assemble import MAX_CELLS, atomic_file, build_sequences, check_nonempty, describe_sources

__all__ = ["read_parquet", "write_parquet", "COLUMNS", "LAYOUT_VERSION"]

COLUMNS = ("sequence", "position", "layer", "rank", "expert")
LAYOUT_VERSION = 1
_META = "ising_moe."


def _pyarrow(feature: str):
    pa = require("pyarrow", "traces", feature)
    pq = require("pyarrow.parquet", "traces", feature)
    return pa, pq


def _meta_int(meta: dict, key: str, where: str) -> int | None:
    raw = meta.get((_META + key).encode())
    if raw is None:
        return None
    try:
        return int(raw.decode())
    except (UnicodeDecodeError, ValueError):
        raise DataFormatError(f"{where}: schema metadata {_META}{key} = {raw!r} is not an integer") from None


def _column(table, name: str, where: str, pa) -> np.ndarray:
    col = table.column(name)
    if col.null_count:
        raise DataFormatError(f"{where}: column {name!r} has {col.null_count} null value(s)")
    if name == "dropped":
        if not pa.types.is_boolean(col.type):
            raise DataFormatError(f"{where}: column 'dropped' must be boolean, found {col.type}")
        return col.to_numpy().astype(bool)
    if not pa.types.is_integer(col.type):
        raise DataFormatError(f"{where}: column {name!r} must hold integers, found {col.type}")
    return col.to_numpy().astype(np.int64)


def read_parquet(source, *, n_experts: int | None = None, model_id: str | None = None) -> ExpertSequences:
    """Read routing in the long Parquet layout (see the module docstring).

    Raises
    ------
    MissingDependencyError
        pyarrow is not installed.
    DataFormatError
        Unreadable file, missing columns, non-integer or null values, duplicate rows, a token
        without all its layers and ranks (ragged layers), negative positions or ranks.
    """
    pa, pq = _pyarrow("reading Parquet routing traces")
    path = Path(source)
    check_nonempty(path)
    where = str(path)
    try:
        pfile = pq.ParquetFile(path)
        names = set(pfile.schema_arrow.names)
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            raise DataFormatError(f"{where}: missing column(s) {', '.join(missing)} "
                                  f"(a routing table has {', '.join(COLUMNS)})")
        wanted = list(COLUMNS) + (["dropped"] if "dropped" in names else [])
        table = pfile.read(columns=wanted)
        meta = pfile.schema_arrow.metadata or {}
    except (pa.ArrowException, OSError) as exc:
        raise DataFormatError(f"{where}: not a readable Parquet file ({exc})") from None
    cols = {name: _column(table, name, where, pa) for name in wanted}
    version = _meta_int(meta, "layout_version", where)
    if version is not None and version > LAYOUT_VERSION:
        raise DataFormatError(f"{where}: layout_version {version} is newer than this ising-moe reads: upgrade")
    if len(cols["sequence"]) == 0:
        raise DataFormatError(f"{where}: the table has no rows")
    for name in ("position", "rank"):
        if cols[name].min() < 0:
            raise DataFormatError(f"{where}: negative value in column {name!r}")
    declared = _meta_int(meta, "n_sequences", where)
    if declared is not None and cols["sequence"].min() >= 0 and cols["sequence"].max() < declared:
        # ids are indices (as export writes them): keep fully padded sequences in place
        seq_ids, seq, n_seq, order = np.arange(declared), cols["sequence"], declared, "ids as indices"
    else:
        seq_ids, seq = np.unique(cols["sequence"], return_inverse=True)
        n_seq, order = len(seq_ids), "sorted ids"
    layer_ids, layer = np.unique(cols["layer"], return_inverse=True)
    pos, rank = cols["position"], cols["rank"]
    n_pos = max(int(pos.max()) + 1, _meta_int(meta, "n_positions", where) or 0)
    n_layers, top_k = len(layer_ids), int(rank.max()) + 1
    shape = (n_seq, n_layers, n_pos, top_k)
    if float(np.prod(shape, dtype=np.float64)) > MAX_CELLS:
        raise DataFormatError(f"{where}: the padded routing array would have shape {shape}; a position is implausible")
    token = seq * n_pos + pos
    cell = (token * n_layers + layer) * top_k + rank
    if len(np.unique(cell)) != len(cell):
        raise DataFormatError(f"{where}: duplicate rows for one (sequence, position, layer, rank)")
    rows_per_token = np.bincount(token, minlength=n_seq * n_pos)
    present = rows_per_token > 0
    incomplete = present & (rows_per_token != n_layers * top_k)
    if incomplete.any():
        t = int(np.flatnonzero(incomplete)[0])
        raise DataFormatError(
            f"{where}: ragged layers: token (sequence {seq_ids[t // n_pos]}, position {t % n_pos}) has "
            f"{rows_per_token[t]} rows, expected {n_layers} layers x top-{top_k} = {n_layers * top_k}")
    experts = np.zeros(shape, dtype=np.int64)
    experts[seq, layer, pos, rank] = cols["expert"]
    mask = present.reshape(n_seq, n_pos)
    dropped = None
    if "dropped" in cols:
        dropped = np.zeros((n_seq, n_layers, n_pos), dtype=bool)
        dropped[seq, layer, pos] = cols["dropped"]
    return build_sequences(
        experts, mask, where=where, source_format="parquet", sources=describe_sources([path]), layers=layer_ids,
        n_experts=n_experts, n_experts_in_file=_meta_int(meta, "n_experts", where), model_id=model_id,
        source_version="" if version is None else f"layout {version}", dropped=dropped,
        notes={"sequence_order": order})


def write_parquet(data: ExpertSequences, path, *, overwrite: bool = False) -> Path:
    """Write expert sequences as the long Parquet table (valid tokens only), atomically."""
    pa, pq = _pyarrow("writing Parquet routing traces")
    n_seq, _, n_pos, _ = data.experts.shape
    full = np.broadcast_to(data.mask[:, None, :, None], data.experts.shape)
    s, li, p, r = np.nonzero(full)
    columns = {
        "sequence": pa.array(s.astype(np.int64)),
        "position": pa.array(p.astype(np.int64)),
        "layer": pa.array(data.layers[li].astype(np.int64)),
        "rank": pa.array(r.astype(np.int16)),
        "expert": pa.array(data.experts[s, li, p, r].astype(np.int32)),
    }
    if data.dropped is not None:
        columns["dropped"] = pa.array(data.dropped[s, li, p])
    meta = {"n_experts": data.n_experts, "n_sequences": n_seq, "n_positions": n_pos,
            "layout_version": LAYOUT_VERSION}
    table = pa.table(columns).replace_schema_metadata({f"{_META}{k}": str(v) for k, v in meta.items()})
    with atomic_file(path, overwrite) as tmp:
        pq.write_table(table, tmp)
    return Path(path)
