"""The plain NumPy layout (``.npz``) for routing from any other source, and its writer.

Layout (version 1)
------------------
A ``.npz`` archive (``numpy.savez``; no pickled objects) with

========== ===================================================== ===========================
key        array                                                 required
========== ===================================================== ===========================
experts    int, (n_sequences, n_layers, n_positions, top_k):     yes
           expert ids in the router's rank order (column 0 = first choice);
           (n_sequences, n_positions) is read as one layer, top-1
mask       bool, (n_sequences, n_positions): valid tokens        no (default: all valid)
layers     int, (n_layers,): the model's block index per layer   no (default 0..n_layers-1)
n_experts  int scalar: the model's number of experts             no (default max id + 1)
token_ids  int, (n_sequences, n_positions)                       no
dropped    bool, (n_sequences, n_layers, n_positions):           no
           tokens dropped by expert capacity
========== ===================================================== ===========================

Entries at ``mask == False`` are ignored (padding of ragged sequences). ``isingmoe export
--format npz`` writes this layout plus ``layout_version`` (1).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from ..data import ExpertSequences
from ..errors import DataFormatError
from .assemble import as_id_array, atomic_file, build_sequences, check_nonempty, describe_sources

__all__ = ["read_npz", "write_npz", "LAYOUT_VERSION"]

LAYOUT_VERSION = 1


def _scalar_int(value, where: str) -> int:
    arr = np.asarray(value)
    if arr.ndim != 0 or arr.dtype.kind not in "iu":
        raise DataFormatError(f"{where} must be an integer scalar, found {arr.dtype} {arr.shape}")
    return int(arr)


def _optional(data, key: str, kind: str, shape: tuple, where: str):
    if key not in data.files:
        return None
    arr = data[key]
    if arr.dtype.kind not in kind or arr.shape != shape:
        raise DataFormatError(f"{where}:{key} must be {'bool' if kind == 'b' else 'int'} of shape {shape}, "
                              f"found {arr.dtype} {arr.shape}")
    return arr


def read_npz(source, *, n_experts: int | None = None, model_id: str | None = None) -> ExpertSequences:
    """Read routing in the plain ``.npz`` layout (see the module docstring).

    Parameters
    ----------
    source : path-like
    n_experts : int, optional
        Must agree with the archive's ``n_experts`` when both are given.
    model_id : str, optional
    """
    path = Path(source)
    check_nonempty(path)
    where = str(path)
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic[:4] != b"PK\x03\x04":
        what = "a single .npy array" if magic == b"\x93NUMPY" else "no zip signature"
        raise DataFormatError(f"{where}: not a .npz archive ({what}); expected numpy.savez output with an "
                              "'experts' array")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataFormatError(f"{where}: not a readable .npz archive ({exc})") from None
    try:
        with data:
            if "experts" not in data.files:
                raise DataFormatError(f"{where}: missing key 'experts' (found {', '.join(data.files) or 'none'})")
            experts = data["experts"]
            if experts.ndim == 2:
                experts = experts[:, None, :, None]
            experts = as_id_array(experts, f"{where}:experts", ndim=4)
            n_seq, n_layers, n_pos, _ = experts.shape
            mask = _optional(data, "mask", "b", (n_seq, n_pos), where)
            layers = _optional(data, "layers", "iu", (n_layers,), where)
            token_ids = _optional(data, "token_ids", "iu", (n_seq, n_pos), where)
            dropped = _optional(data, "dropped", "b", (n_seq, n_layers, n_pos), where)
            in_file = _scalar_int(data["n_experts"], f"{where}:n_experts") if "n_experts" in data.files else None
            version = _scalar_int(data["layout_version"], f"{where}:layout_version") \
                if "layout_version" in data.files else None
    except DataFormatError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:  # a damaged member
        raise DataFormatError(f"{where}: unreadable array in the archive ({exc})") from None
    if version is not None and version > LAYOUT_VERSION:
        raise DataFormatError(f"{where}: layout_version {version} is newer than this ising-moe reads "
                              f"({LAYOUT_VERSION}): upgrade ising-moe")
    mask = np.ones((n_seq, n_pos), dtype=bool) if mask is None else mask
    return build_sequences(experts, mask, where=where, source_format="npz", sources=describe_sources([path]),
                           layers=layers, n_experts=n_experts, n_experts_in_file=in_file, model_id=model_id,
                           source_version="" if version is None else f"layout {version}", dropped=dropped,
                           token_ids=token_ids)


def write_npz(data: ExpertSequences, path, *, overwrite: bool = False) -> Path:
    """Write expert sequences in the plain ``.npz`` layout, atomically.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is False.
    """
    arrays = {"experts": data.experts, "mask": data.mask, "layers": data.layers,
              "n_experts": np.int64(data.n_experts), "layout_version": np.int64(LAYOUT_VERSION)}
    if data.token_ids is not None:
        arrays["token_ids"] = data.token_ids
    if data.dropped is not None:
        arrays["dropped"] = data.dropped
    # a file object, because savez appends '.npz' to a name without it
    with atomic_file(path, overwrite) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(path)
