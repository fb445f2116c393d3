"""Shared validation and assembly of imported routing traces.

Every reader in :mod:`ising_moe.traces` turns its source into per-sequence token arrays of shape
``(n_tokens, n_layers, top_k)`` (or directly into a padded array), then calls this module to

- check that all sequences agree on the number of layers and on ``top_k`` ("ragged layers");
- pad ragged sequences to ``(n_sequences, n_layers, n_positions, top_k)`` with ``mask = False``
  (padded entries hold expert 0, as in extraction files);
- check the expert ids of valid tokens: integers, ``0 <= id < n_experts``, no id twice among one
  token's top-k (a real router picks distinct experts; repeats are what engines leave in rows they
  never filled, e.g. zeros for prefix-cache hits);
- resolve ``n_experts`` (the option, the value stored in the file, or ``max id + 1``, recorded as
  inferred);
- build the :class:`~ising_moe.data.ExpertSequences` with the provenance attributes of an imported
  trace: ``weights = "imported-trace"`` (the attribute that says ``"pretrained"`` or
  ``"random-init"`` for data extracted here), ``source_format``, ``source_files`` (JSON list of
  name, size and SHA-256 of every source file), ``source_version`` and format-specific notes.

Every failure is a :class:`~ising_moe.errors.DataFormatError` naming the file and what is wrong.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data import ExpertSequences
from ..errors import DataFormatError, InvalidParameterError
from ..io import file_sha256

__all__ = [
    "WEIGHTS_LABEL",
    "MAX_EXPERTS",
    "describe_sources",
    "check_nonempty",
    "source_paths",
    "as_id_array",
    "read_json_records",
    "pad_sequences",
    "drop_unrouted_layers",
    "trim_unused_ranks",
    "build_sequences",
    "atomic_file",
]

#: value of the ``weights`` attribute of imported data (extraction writes "pretrained"/"random-init")
WEIGHTS_LABEL = "imported-trace"
#: extraction files store expert ids as uint8/uint16
MAX_EXPERTS = 1 << 16
#: refuse to allocate padded arrays larger than this many entries (a garbled position or length)
MAX_CELLS = 1 << 31


def describe_sources(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Name, size in bytes and SHA-256 of each source file (for the ``source_files`` attribute)."""
    out = []
    for path in paths:
        path = Path(path)
        try:
            size = path.stat().st_size
            digest = file_sha256(path)
        except OSError as exc:
            raise DataFormatError(f"{path}: unreadable ({exc.strerror or exc})") from None
        out.append({"name": path.name, "bytes": int(size), "sha256": digest})
    return out


@contextlib.contextmanager
def atomic_file(path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    Readers never see a half-written export, and a failure leaves nothing behind.
    """
    from ..outputs import _ensure_directory, check_target, disk_full, disk_full_error

    path = Path(path)
    check_target(path, overwrite)
    _ensure_directory(path.parent)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        if disk_full(exc):
            raise disk_full_error(path, exc) from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def source_paths(source, pattern: str, what: str) -> list[Path]:
    """The files to read: ``source`` itself, or the files matching ``pattern`` in a directory."""
    source = Path(source)
    if source.is_dir():
        paths = sorted(p for p in source.glob(pattern) if p.is_file())
        if not paths:
            raise DataFormatError(f"{source} holds no {what} files ({pattern})")
        for path in paths:
            check_nonempty(path)
        return paths
    check_nonempty(source)
    return [source]


def check_nonempty(path: Path) -> None:
    """Refuse a missing or zero-length source file with a named error."""
    if not path.exists():
        raise DataFormatError(f"{path}: no such file")
    if path.is_file() and path.stat().st_size == 0:
        raise DataFormatError(f"{path} is empty")


def read_json_records(path: Path):
    """Yield ``(label, record)`` for each JSON object of a ``.jsonl`` file or a ``.json`` document.

    A ``.json`` document is one object or a list of objects; any other suffix is read as JSON
    Lines when its first non-blank character does not open a list.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16).lstrip()
    except OSError as exc:
        raise DataFormatError(f"{path}: unreadable ({exc.strerror or exc})") from None
    if not head:
        raise DataFormatError(f"{path} is empty")
    whole = path.suffix.lower() == ".json" or head[:1] == b"["
    try:
        if whole:
            doc = json.loads(path.read_bytes())
            items = doc if isinstance(doc, list) else [doc]
            for i, item in enumerate(items):
                yield f"{path}: item {i}", item
            return
        with open(path, "rb") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    yield f"{path}:{n}", json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f"{path}:{n}" if not whole else str(path)
        raise DataFormatError(f"{where}: not valid JSON ({exc}); the file may be truncated or garbled") from None


def as_id_array(value: Any, where: str, ndim: int) -> np.ndarray:
    """Convert nested lists or an array of expert ids to ``int64`` with ``ndim`` dimensions.

    Raises
    ------
    DataFormatError
        Ragged nesting, non-integer values (floats with a fraction, strings, booleans) or a
        wrong number of dimensions.
    """
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError):
        raise DataFormatError(f"{where}: ragged nested lists (rows of different lengths)") from None
    if arr.dtype == object:
        raise DataFormatError(f"{where}: ragged nested lists or mixed types")
    if arr.size == 0 and arr.ndim < ndim:  # an empty list: no tokens
        return np.zeros((0,) * ndim, dtype=np.int64)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise DataFormatError(f"{where}: expert ids must be integers, found non-integer values")
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise DataFormatError(f"{where}: expert ids must be integers, found {arr.dtype}")
    if arr.ndim != ndim:
        raise DataFormatError(f"{where}: expected {ndim} dimensions, found shape {arr.shape}")
    return arr.astype(np.int64, copy=False)


def _check_cells(shape: tuple[int, ...], where: str) -> None:
    cells = int(np.prod([max(1, s) for s in shape], dtype=np.float64))
    if cells > MAX_CELLS:
        raise DataFormatError(
            f"{where}: the padded routing array would have shape {shape} ({cells:.3g} entries); "
            "a position or length in the file is implausible"
        )


def pad_sequences(tokens: Sequence[np.ndarray], where: str, starts: Sequence[int] | None = None,
                  labels: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pad per-sequence token arrays into the extraction layout.

    Parameters
    ----------
    tokens : sequence of ndarray of int, each shape (n_tokens_i, n_layers, top_k)
    where : str
        The source, for messages.
    starts : sequence of int, optional
        Position of each sequence's first token (default 0): tokens of sequence ``i`` occupy
        positions ``starts[i] .. starts[i] + n_tokens_i - 1``.
    labels : sequence of str, optional
        How to name sequence ``i`` in messages (default ``"sequence i"``).

    Returns
    -------
    experts : ndarray of int64, shape (n_sequences, n_layers, n_positions, top_k)
        0 at padded positions.
    mask : ndarray of bool, shape (n_sequences, n_positions)
    """
    if not tokens:
        raise DataFormatError(f"{where}: no sequences with routing data")
    labels = labels or [f"sequence {i}" for i in range(len(tokens))]
    starts = [0] * len(tokens) if starts is None else [int(s) for s in starts]
    first = tokens[0]
    _, n_layers, top_k = first.shape
    for seq, label in zip(tokens, labels):
        if seq.shape[1] != n_layers:
            raise DataFormatError(
                f"{where}: ragged layers: {label} has {seq.shape[1]} MoE layers, {labels[0]} has {n_layers}")
        if seq.shape[2] != top_k:
            raise DataFormatError(f"{where}: {label} has top-{seq.shape[2]} routing, {labels[0]} has top-{top_k}")
    if min(starts) < 0:
        raise DataFormatError(f"{where}: negative token position")
    n_positions = max(s + len(t) for s, t in zip(starts, tokens))
    shape = (len(tokens), n_layers, n_positions, top_k)
    _check_cells(shape, where)
    experts = np.zeros(shape, dtype=np.int64)
    mask = np.zeros((len(tokens), n_positions), dtype=bool)
    for i, (seq, start) in enumerate(zip(tokens, starts)):
        experts[i, :, start:start + len(seq)] = seq.transpose(1, 0, 2)
        mask[i, start:start + len(seq)] = True
    return experts, mask


def drop_unrouted_layers(experts: np.ndarray, mask: np.ndarray, layers: np.ndarray, fill: int
                         ) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Remove layers in which no valid token was routed (every entry equals ``fill``).

    Engines that size their buffers by the model's hidden layers leave dense (non-MoE) layers at
    their fill value: 0 in vLLM's older capturer, -1 in SGLang's recorder. With ``fill = 0`` this
    is only unambiguous for ``top_k >= 2`` (a router never picks expert 0 twice), so callers use
    it only then.

    Returns
    -------
    experts, layers : the kept layers
    dropped : list of int, the ``layers`` values removed
    """
    valid = experts.transpose(1, 0, 2, 3)[:, mask]  # (n_layers, n_valid, top_k)
    if valid.shape[1] == 0:
        return experts, layers, []
    unrouted = np.all(valid == fill, axis=(1, 2))
    dropped = [int(x) for x in layers[unrouted]]
    if unrouted.all():
        return experts, layers, []  # leave it to the id checks to report
    return experts[:, ~unrouted], layers[~unrouted], dropped


def trim_unused_ranks(experts: np.ndarray, mask: np.ndarray, fill: int = -1) -> np.ndarray:
    """Drop trailing top-k columns that hold ``fill`` for every valid token of every layer.

    SGLang's per-token recorder writes into a fixed 8-column buffer pre-filled with -1, so a
    top-2 model leaves columns 2..7 at -1.
    """
    valid = experts.transpose(1, 0, 2, 3)[:, mask]  # (n_layers, n_valid, top_k)
    if valid.shape[1] == 0:
        return experts
    used = ~np.all(valid == fill, axis=(0, 1))
    keep = int(np.flatnonzero(used).max()) + 1 if used.any() else experts.shape[3]
    return experts[..., :keep]


def _resolve_n_experts(requested: int | None, in_file: int | None, max_id: int, where: str
                       ) -> tuple[int, str]:
    if requested is not None:
        try:
            requested = int(requested)
        except (TypeError, ValueError):
            raise InvalidParameterError(f"n_experts must be an integer, got {requested!r}") from None
        if requested < 1 or requested > MAX_EXPERTS:
            raise InvalidParameterError(f"n_experts must lie in 1..{MAX_EXPERTS}, got {requested}")
        if in_file is not None and in_file != requested:
            raise DataFormatError(
                f"{where} says n_experts = {in_file}, but {requested} was requested: drop --n-experts "
                "or fix the file")
        return requested, "option"
    if in_file is not None:
        if in_file < 1 or in_file > MAX_EXPERTS:
            raise DataFormatError(f"{where}: n_experts = {in_file} stored in the file is out of 1..{MAX_EXPERTS}")
        return int(in_file), "file"
    if max_id + 1 > MAX_EXPERTS:
        raise DataFormatError(f"{where}: expert id {max_id} is beyond the supported {MAX_EXPERTS} experts")
    return max_id + 1, "inferred"


def build_sequences(experts: np.ndarray, mask: np.ndarray, *, where: str, source_format: str,
                    sources: Sequence[Mapping[str, Any]], layers: np.ndarray | None = None,
                    n_experts: int | None = None, n_experts_in_file: int | None = None,
                    model_id: str | None = None, source_version: str = "",
                    notes: Mapping[str, Any] | None = None, dropped: np.ndarray | None = None,
                    token_ids: np.ndarray | None = None) -> ExpertSequences:
    """Validate an imported routing array and wrap it with the provenance of an imported trace.

    Parameters
    ----------
    experts : ndarray of int, shape (n_sequences, n_layers, n_positions, top_k)
    mask : ndarray of bool, shape (n_sequences, n_positions)
    where : str
        The source, for messages.
    source_format : str
        ``"vllm"``, ``"sglang"``, ``"megatron"``, ``"npz"`` or ``"parquet"``.
    sources : sequence of dict
        :func:`describe_sources` of the files read.
    layers : ndarray of int, shape (n_layers,), optional
        Layer label of each entry of the layer axis (default ``0..n_layers-1``).
    n_experts : int, optional
        Requested number of experts; else the file's, else ``max id + 1`` (``n_experts_origin =
        "inferred"``: a lower bound when some expert was never chosen).
    notes : mapping, optional
        Format-specific facts (skipped records, dropped layers, ...), stored as the JSON attribute
        ``import_notes``.

    Raises
    ------
    DataFormatError
        No valid token, negative ids, ids ``>= n_experts``, repeated ids within a token's top-k.
    """
    experts = np.asarray(experts)
    mask = np.asarray(mask, dtype=bool)
    if experts.ndim != 4:
        raise DataFormatError(f"{where}: routing must have 4 dimensions "
                              f"(sequence, layer, position, rank), found shape {experts.shape}")
    n_seq, n_layers, n_pos, top_k = experts.shape
    if mask.shape != (n_seq, n_pos):
        raise DataFormatError(f"{where}: mask has shape {mask.shape}, expected {(n_seq, n_pos)}")
    if n_layers == 0 or top_k == 0:
        raise DataFormatError(f"{where}: routing has no layers or no top-k entries (shape {experts.shape})")
    layers = np.arange(n_layers, dtype=np.int64) if layers is None else np.asarray(layers, dtype=np.int64)
    if layers.shape != (n_layers,) or len(np.unique(layers)) != n_layers:
        raise DataFormatError(f"{where}: layer labels {layers.tolist()} do not name {n_layers} distinct layers")
    if not mask.any():
        raise DataFormatError(f"{where}: no token with routing data")
    valid = experts.transpose(1, 0, 2, 3)[:, mask]  # (n_layers, n_valid, top_k)
    if valid.min() < 0:
        li, ti, _ = np.argwhere(valid < 0)[0]
        raise DataFormatError(
            f"{where}: negative expert id {valid.min()} (layer {layers[li]}, valid token {ti}); "
            "engines mark tokens without routing (e.g. prefix-cache hits) this way: disable prefix "
            "caching when recording")
    size, origin = _resolve_n_experts(n_experts, n_experts_in_file, int(valid.max()), where)
    if valid.max() >= size:
        raise DataFormatError(
            f"{where}: expert id {valid.max()} >= n_experts = {size}; pass the model's expert count "
            "(--n-experts) if the file is right")
    if top_k > 1:
        ordered = np.sort(valid, axis=-1)
        repeats = np.any(ordered[..., 1:] == ordered[..., :-1], axis=-1)
        if repeats.any():
            li, ti = np.argwhere(repeats)[0]
            raise DataFormatError(
                f"{where}: {int(repeats.sum())} token(s) list an expert twice in their top-{top_k} "
                f"(first: layer {layers[li]}, valid token {ti}); a router picks distinct experts, so "
                "these rows were never filled (prefix-cache hits, padding)")
    id_dtype = np.uint8 if size <= 256 else np.uint16
    clean = np.where(mask[:, None, :, None], experts, 0).astype(id_dtype)
    if dropped is not None:
        dropped = np.asarray(dropped, dtype=bool) & mask[:, None, :]
    attrs = {
        "model_id": model_id or "unknown",
        "weights": WEIGHTS_LABEL,
        "source_format": source_format,
        "source_files": json.dumps(list(sources), sort_keys=True),
        "source_version": source_version or "",
        "n_experts_origin": origin,
        "import_notes": json.dumps(dict(notes or {}), sort_keys=True),
    }
    try:
        return ExpertSequences(experts=clean, mask=mask, n_experts=size, layers=layers, dropped=dropped,
                               token_ids=token_ids, attrs=attrs)
    except InvalidParameterError as exc:
        raise DataFormatError(f"{where}: {exc}") from None
