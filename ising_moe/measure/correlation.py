"""Same-state connected correlation C(r) of expert sequences, with influence-function errors and nulls."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .._util import RngLike, as_generator, as_int
from . import _kernels as K
from ._input import as_routing

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class CorrelationEstimate:
    """Empirical same-state correlations (see the module docstring for the estimator).

    Attributes
    ----------
    distances : ndarray of shape (R + 1,)
    values, errors : ndarray of shape (R + 1,)
        ``C(r)`` and its standard error.
    per_state, per_state_errors : ndarray of shape (R + 1, n_experts)
        ``C_e(r)``.
    null : ndarray of shape (n_null, R + 1)
        ``C(r)`` of position-wise shuffled sequences.
    by_position : ndarray of shape (n_positions, R + 1)
        ``C(i, i + r)`` (NaN where fewer than two valid pairs).
    block_sizes : tuple of int
    block_values, block_errors : dict of int -> ndarray of shape (R + 1,)
        Block-pooled ``C_b(r)`` (NaN for ``r >= b``).
    influence : ndarray of shape (n_sequences, R + 1)
        Centred influence of each sequence on ``C(r)`` (for bootstraps).
    block_influence : dict of int -> ndarray of shape (n_sequences, R + 1)
    """

    distances: np.ndarray
    values: np.ndarray
    errors: np.ndarray
    per_state: np.ndarray
    per_state_errors: np.ndarray
    null: np.ndarray
    by_position: np.ndarray
    block_sizes: tuple
    block_values: dict
    block_errors: dict
    influence: np.ndarray = field(repr=False)
    block_influence: dict = field(repr=False)

    @property
    def n_sequences(self) -> int:
        return self.influence.shape[0]


def _pair_statistics(ids, mask, n_experts, max_distance):
    n_seq, n, _ = ids.shape
    joint = np.empty((n, max_distance + 1, n_experts))
    n_pairs = np.empty((n, max_distance + 1), dtype=np.int64)
    counts = np.empty((n, n_experts))
    n_valid = np.empty(n, dtype=np.int64)
    K.pair_counts(ids, mask, n_experts, max_distance, joint, n_pairs, counts, n_valid)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n_valid[:, None] > 0, counts / np.maximum(n_valid, 1)[:, None], 0.0)
        c_state = np.full((n, max_distance + 1, n_experts), np.nan)
        for r in range(max_distance + 1):
            npr = n_pairs[: n - r, r].astype(float)
            ok = npr >= 2
            c = joint[: n - r, r] / np.maximum(npr, 1)[:, None] - p[: n - r] * p[r:]
            c *= (npr / np.maximum(npr - 1, 1))[:, None]
            c_state[: n - r][ok, r] = c[ok]
    return p, n_pairs, c_state


def _shuffle_within_positions(ids, mask, rng):
    out = ids.copy()
    for i in range(ids.shape[1]):
        rows = np.flatnonzero(mask[:, i])
        out[rows, i] = ids[rng.permutation(rows), i]
    return out


def correlation_function(ids, mask=None, n_experts=None, max_distance: int = 64, block_sizes=(),
                         n_null: int = 4, rng: RngLike = None) -> CorrelationEstimate:
    """Empirical ``C(r)``, per-state ``C_e(r)``, block-pooled ``C_b(r)`` and a shuffle null.

    Parameters
    ----------
    ids : array_like of int, shape (n_sequences, n_positions[, top_k])
    mask : array_like of bool, shape (n_sequences, n_positions), optional
    n_experts : int, optional
    max_distance : int, default 64
    block_sizes : sequence of int
        Block sizes for the block-pooled correlations.
    n_null : int, default 4
        Number of position-wise shuffles for the null.
    rng : seed or Generator
    """
    ids, mask, n_experts = as_routing(ids, mask, n_experts)
    n_seq, n, _ = ids.shape
    max_distance = as_int(max_distance, "max_distance", 1, n - 1)
    block_sizes = tuple(as_int(b, "block size", 2) for b in block_sizes)
    gen = as_generator(rng)
    p, n_pairs, c_state = _pair_statistics(ids, mask, n_experts, max_distance)
    by_position = c_state.sum(axis=2)  # NaN propagates where a pair is missing
    usable = np.isfinite(by_position)
    n_used = usable.sum(axis=0)
    per_state = np.where(usable[:, :, None], c_state, 0.0).sum(axis=0) / np.maximum(n_used, 1)[:, None]
    values = per_state.sum(axis=1)
    pair_weight = np.where(usable & (n_pairs >= 2), n_seq / np.maximum(n_pairs, 1), 0.0)
    pos_norm = 1.0 / np.maximum(n_used, 1)
    block_of = np.full((len(block_sizes), n), -1, dtype=np.int64)
    for m, b in enumerate(block_sizes):
        block_of[m] = np.arange(n) // b
    phi_state = np.empty((n_seq, max_distance + 1, n_experts))
    phi_block = np.empty((len(block_sizes), n_seq, max_distance + 1))
    K.influence(ids, mask, p, pair_weight, pos_norm, block_of, phi_state, phi_block)
    phi_state -= phi_state.mean(axis=0)
    phi = phi_state.sum(axis=2)
    errors = np.sqrt((phi**2).sum(axis=0)) / n_seq
    per_state_errors = np.sqrt((phi_state**2).sum(axis=0)) / n_seq
    block_values, block_errors, block_influence = {}, {}, {}
    for m, b in enumerate(block_sizes):
        same = (np.arange(n)[:, None] // b) == ((np.arange(n)[:, None] + np.arange(max_distance + 1)) // b)
        inside = usable & same
        count = inside.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            vals = np.where(inside, by_position, 0.0).sum(axis=0) / count
            infl = phi_block[m] / np.where(count > 0, count, np.nan)
        infl = np.where(np.isfinite(infl), infl, 0.0)
        infl -= infl.mean(axis=0)
        vals = np.where(count > 0, vals, np.nan)
        block_values[b] = vals
        block_errors[b] = np.where(count > 0, np.sqrt((infl**2).sum(axis=0)) / n_seq, np.nan)
        block_influence[b] = infl
    null = np.empty((n_null, max_distance + 1))
    for t in range(n_null):
        _, _, c_null = _pair_statistics(_shuffle_within_positions(ids, mask, gen), mask, n_experts, max_distance)
        tot = c_null.sum(axis=2)
        null[t] = np.where(np.isfinite(tot), tot, 0.0).sum(axis=0) / np.maximum(np.isfinite(tot).sum(axis=0), 1)
    return CorrelationEstimate(
        distances=np.arange(max_distance + 1), values=values, errors=errors, per_state=per_state,
        per_state_errors=per_state_errors, null=null, by_position=by_position, block_sizes=block_sizes,
        block_values=block_values, block_errors=block_errors, influence=phi, block_influence=block_influence,
    )
