"""Expert sequences prepared for the chain fitters: states, observed mask, lengths and run tables."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .._util import as_int
from ..chain import spins_to_states
from ..errors import InvalidParameterError

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class ChainData:
    """Validated sequences and their sufficient statistics for a given coupling range.

    Attributes
    ----------
    states : ndarray of int64, shape (n_sequences, n_sites)
    observed : ndarray of bool, shape (n_sequences, n_sites)
        Valid sites inside each sequence's length.
    lengths : ndarray of int64, shape (n_sequences,)
    n_states : int
    full_rows, hole_rows : ndarray of int64
        Sequences without / with hidden sites inside their length.
    length_counts : dict of int -> int
        Number of sequences of each length.
    n_tokens : int
        Observed sites.
    """

    states: np.ndarray
    observed: np.ndarray
    lengths: np.ndarray
    n_states: int
    full_rows: np.ndarray
    hole_rows: np.ndarray
    length_counts: dict
    n_tokens: int

    @property
    def n_sites(self) -> int:
        return self.states.shape[1]

    @classmethod
    def from_arrays(cls, X, mask=None, lengths=None, n_states=None, spins: bool = False) -> ChainData:
        arr = np.asarray(X)
        if arr.ndim != 2 or arr.shape[1] < 2 or arr.shape[0] < 1:
            raise InvalidParameterError(f"X must have shape (n_sequences, n_positions >= 2), got {arr.shape}")
        if spins:
            m0 = np.ones(arr.shape, bool) if mask is None else np.asarray(mask, bool)
            arr = np.where(m0, arr, 1)
            arr = spins_to_states(arr)
            n_states = 2 if n_states is None else n_states
        if not np.issubdtype(arr.dtype, np.integer):
            raise InvalidParameterError(f"X must hold integer states, got dtype {arr.dtype} (Ising ±1: spins=True)")
        m = np.ones(arr.shape, bool) if mask is None else np.asarray(mask)
        if m.shape != arr.shape or m.dtype != bool:
            raise InvalidParameterError(f"mask must be boolean of shape {arr.shape}")
        if lengths is None:
            any_valid = m.any(axis=1)
            if not any_valid.all():
                raise InvalidParameterError(
                    f"{int((~any_valid).sum())} sequence(s) have no valid position: drop them before fitting")
            lengths = arr.shape[1] - np.argmax(m[:, ::-1], axis=1)
        lengths = np.asarray(lengths, dtype=np.int64)
        if lengths.shape != (arr.shape[0],) or lengths.min() < 2 or lengths.max() > arr.shape[1]:
            raise InvalidParameterError(f"lengths must be integers in 2..{arr.shape[1]}, one per sequence")
        inside = np.arange(arr.shape[1])[None, :] < lengths[:, None]
        observed = m & inside
        valid = arr[observed]
        if valid.size == 0:
            raise InvalidParameterError("no valid position in the data")
        if valid.min() < 0:
            raise InvalidParameterError(f"states must be >= 0, found {valid.min()} (Ising ±1: spins=True)")
        if n_states is None:
            n_states = int(valid.max()) + 1
        n_states = as_int(n_states, "n_states", minimum=2)
        if valid.max() >= n_states:
            raise InvalidParameterError(f"states must be < n_states = {n_states}, found {valid.max()}")
        states = np.where(observed, arr, 0).astype(np.int64)
        holes = (inside & ~m).any(axis=1)
        unique, counts = np.unique(lengths, return_counts=True)
        return cls(np.ascontiguousarray(states), np.ascontiguousarray(observed), lengths, n_states,
                   np.flatnonzero(~holes), np.flatnonzero(holes), dict(zip(unique.tolist(), counts.tolist())),
                   int(observed.sum()))

    def counts(self, max_range: int, per_bond: bool, rows=None):
        """Site counts (n, q) and counts (R, n_c, q, q) of pairs of observed sites, over ``rows``
        (default the fully observed sequences)."""
        n, q = self.n_sites, self.n_states
        rows = self.full_rows if rows is None else rows
        site = np.zeros((n, q))
        pair = np.zeros((max_range, n - 1 if per_bond else 1, q, q))
        if rows.size == 0:
            return site, pair
        x = self.states[rows]
        inside = self.observed[rows]
        pos = np.broadcast_to(np.arange(n), x.shape)
        np.add.at(site, (pos[inside], x[inside]), 1.0)
        for r in range(1, max_range + 1):
            ok = inside[:, :-r] & inside[:, r:]
            left = pos[:, :-r][ok]
            np.add.at(pair[r - 1], (left if per_bond else 0, x[:, :-r][ok], x[:, r:][ok]), 1.0)
        return site, pair

    def hidden_runs(self) -> np.ndarray:
        """Maximal runs of hidden sites inside the sequences' lengths: rows ``(first, last, left, right)``
        with the observed states next to the run (-1 at a chain end), shape (n_runs, 4)."""
        inside = np.arange(self.n_sites)[None, :] < self.lengths[:, None]
        hidden = inside & ~self.observed
        padded = np.zeros((hidden.shape[0], hidden.shape[1] + 2), dtype=np.int8)
        padded[:, 1:-1] = hidden
        d = np.diff(padded, axis=1)
        s_start, start = np.nonzero(d == 1)
        s_end, end = np.nonzero(d == -1)
        order_s = np.lexsort((start, s_start))
        order_e = np.lexsort((end, s_end))
        seq, first, last = s_start[order_s], start[order_s], end[order_e] - 1
        left = np.where(first > 0, self.states[seq, np.maximum(first - 1, 0)], -1)
        right_ok = last + 1 < self.lengths[seq]
        right = np.where(right_ok, self.states[seq, np.minimum(last + 1, self.n_sites - 1)], -1)
        return np.ascontiguousarray(np.stack([first, last, left, right], axis=1).astype(np.int64))

    def subset(self, rows) -> ChainData:
        rows = np.asarray(rows)
        return ChainData.from_arrays(self.states[rows], self.observed[rows], self.lengths[rows], self.n_states)
