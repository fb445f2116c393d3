"""Validation of routing input shared by the measurements; bootstrap weights over sequences."""

from __future__ import annotations

import logging

import numpy as np

from .._util import as_int
from ..errors import InvalidParameterError

log = logging.getLogger(__name__)


def as_routing(ids, mask=None, n_experts: int | None = None):
    """Validate routing input; returns ``ids`` (int32, shape (N, n, k)), ``mask``, ``n_experts``.

    Raises
    ------
    InvalidParameterError
        Wrong dimensions, ids out of range, repeated ids within a token, or sequences without a
        single valid position.
    """
    arr = np.asarray(ids)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[0] < 2 or arr.shape[1] < 2:
        raise InvalidParameterError(
            "ids must have shape (n_sequences, n_positions) or (n_sequences, n_positions, top_k) with at "
            f"least 2 sequences and 2 positions, got {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.integer):
        raise InvalidParameterError(f"ids must be integers, got dtype {arr.dtype}")
    m = np.ones(arr.shape[:2], dtype=bool) if mask is None else np.asarray(mask)
    if m.shape != arr.shape[:2] or m.dtype != bool:
        raise InvalidParameterError(f"mask must be boolean of shape {arr.shape[:2]}, got {m.dtype} {m.shape}")
    empty = ~m.any(axis=1)
    if empty.any():
        raise InvalidParameterError(
            f"{int(empty.sum())} sequence(s) have no valid position (all masked): drop them before measuring"
        )
    valid = arr[m]
    if valid.size and valid.min() < 0:
        raise InvalidParameterError(f"ids must be >= 0, found {valid.min()}")
    if n_experts is None:
        n_experts = int(valid.max()) + 1
    n_experts = as_int(n_experts, "n_experts", minimum=1)
    if valid.size and valid.max() >= n_experts:
        raise InvalidParameterError(f"ids must be < n_experts = {n_experts}, found {valid.max()}")
    if arr.shape[2] > 1:
        srt = np.sort(valid, axis=-1)
        if (srt[:, 1:] == srt[:, :-1]).any():
            raise InvalidParameterError("the top-k ids of a token must be distinct")
    out = np.where(m[:, :, None], arr, 0).astype(np.int32)
    return np.ascontiguousarray(out), np.ascontiguousarray(m), n_experts


def _bootstrap_weights(n: int, n_bootstrap: int, rng) -> np.ndarray:
    """Multinomial resampling counts over ``n`` sequences (n draws with replacement), shape (n_bootstrap, n)."""
    draws = rng.integers(0, n, size=(n_bootstrap, n)) + n * np.arange(n_bootstrap)[:, None]
    return np.bincount(draws.ravel(), minlength=n_bootstrap * n).reshape(n_bootstrap, n).astype(float)
