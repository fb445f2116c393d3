"""Same-state connected correlation C(r) of expert sequences, with influence-function errors and nulls."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from .._util import RngLike, as_generator, as_int
from ..errors import InvalidParameterError
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
        ``C(r)`` and its standard error (spread of the influences over the ``N`` sequences, divisor
        ``N - 1``: ``N - 1`` degrees of freedom).
    per_state, per_state_errors : ndarray of shape (R + 1, n_experts)
        ``C_e(r)``.
    null : ndarray of shape (n_null, R + 1)
        ``C(r)`` after shuffling tokens across sequences at every position (rates kept, every
        correlation destroyed): the noise floor.
    by_position : ndarray of shape (n_positions, R + 1)
        ``C(i, i + r)`` (NaN where fewer than two valid pairs).
    block_sizes : tuple of int
    block_values, block_errors : dict of int -> ndarray of shape (R + 1,)
        Block-pooled ``C_b(r)`` (NaN for ``r >= b``).
    influence : ndarray of shape (n_sequences, R + 1)
        Centred influence of each sequence on ``C(r)`` (for bootstraps).
    block_influence : dict of int -> ndarray of shape (n_sequences, R + 1)
    null_sequence : ndarray of shape (n_null, R + 1)
        ``C(r)`` after shuffling tokens within each sequence (sequence composition kept, order
        destroyed): what "each sequence prefers some experts" alone produces, flat in ``r``.
    null_token : ndarray of shape (n_null, R + 1)
        ``C(r)`` after permuting the routing among all occurrences of the same token id (token ->
        expert association kept, routing memory destroyed): what token statistics alone produce.
        Empty (0 rows) without token ids.
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
    null_sequence: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    null_token: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    #: ``(sum_s L_s)^2 / sum_s L_s^2`` (``L_s`` valid tokens of sequence ``s``): the number of equally long
    #: sequences that carry as much information; ``N`` for equal lengths. The window test uses
    #: ``n_effective - 1`` degrees of freedom (ragged sequences contribute unequal variances)
    n_effective: float = math.nan

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


def _linear_correction(ids, mask, p, coef, n_pairs, n_valid, joint_mean, pp):
    """What the kernel's per-pair influence misses on ragged or masked data, shape (N, R + 1).

    ``C(i, j) = f (A_ij - p_i . p_j)`` with ``A_ij`` the mean of ``x_i . x_j`` over the ``n_ij``
    sequences valid at both positions and ``p_i`` the rates over the ``n_i`` sequences valid at ``i``.
    Its influence on sequence ``s`` is ``f [(N / n_ij) 1[s in P_ij] (x_i . x_j - A_ij)
    - (N / n_i) 1[s in V_i] (x_i - p_i) . p_j - (N / n_j) 1[s in V_j] (x_j - p_j) . p_i]``. The kernel
    has the first term without ``- A_ij`` and the rate terms restricted to ``P_ij`` with ``N / n_ij``:
    this adds ``- A_ij`` and moves the rate terms to ``V_i``, ``V_j`` (with equal-length unmasked
    sequences the two coincide, up to the constant that centring removed). ``coef[i, r]`` is the weight of
    pair ``(i, i + r)`` in the estimate (``f`` times its share of the average over positions).
    """
    n_seq, n, _ = ids.shape
    out = np.zeros((n_seq, coef.shape[1]))
    maskf = mask.astype(float)
    for r in range(coef.shape[1]):
        m = n - r
        co = coef[:m, r]
        if not np.any(co):
            continue
        xi_pj = p[np.arange(r, n)[None, :, None], ids[:, :m, :]].sum(axis=2)  # x_i . p_{i+r}, (N, m)
        xj_pi = p[np.arange(m)[None, :, None], ids[:, r:, :]].sum(axis=2)  # x_{i+r} . p_i
        both = maskf[:, :m] * maskf[:, r:]
        w_pair = co * n_seq / np.maximum(n_pairs[:m, r], 1)
        out[:, r] += (both * (xi_pj + xj_pi - joint_mean[:m, r])) @ w_pair
        out[:, r] -= (maskf[:, :m] * (xi_pj - pp[:m, r])) @ (co * n_seq / np.maximum(n_valid[:m], 1))
        out[:, r] -= (maskf[:, r:] * (xj_pi - pp[:m, r])) @ (co * n_seq / np.maximum(n_valid[r:], 1))
    return out


def _shuffle_within_positions(ids, mask, rng):
    out = ids.copy()
    for i in range(ids.shape[1]):
        rows = np.flatnonzero(mask[:, i])
        out[rows, i] = ids[rng.permutation(rows), i]
    return out


def _shuffle_within_sequences(ids, mask, rng):
    """Permute the valid tokens of every sequence among themselves (top-k rows move together)."""
    out = ids.copy()
    for s in range(ids.shape[0]):
        cols = np.flatnonzero(mask[s])
        out[s, cols] = ids[s, rng.permutation(cols)]
    return out


def _permute_within_tokens(ids, mask, token_ids, rng):
    """Permute the routing among all valid occurrences of each token id (across sequences and positions)."""
    seq, pos = np.nonzero(mask)
    _, rank = np.unique(token_ids[seq, pos], return_inverse=True)
    by_token = np.argsort(rank, kind="stable")  # grouped by token
    shuffled = np.argsort(rank + rng.random(rank.size))  # grouped by token, random order inside each group
    out = ids.copy()
    out[seq[by_token], pos[by_token]] = ids[seq[shuffled], pos[shuffled]]
    return out


#: up to this many sequences the error of C(r) is the delete-one jackknife's (if larger than the linearised one)
JACKKNIFE_MAX_SEQUENCES = 64


def _pooled_curve(n_pairs, c_state):
    """``C(r)``: the pair-weighted average of ``C(i, i + r)`` over positions, as the estimate."""
    tot = c_state.sum(axis=2)
    w = np.where(np.isfinite(tot), n_pairs, 0).astype(float)
    return np.where(w > 0, tot * w, 0.0).sum(axis=0) / np.maximum(w.sum(axis=0), 1)


def _null_curve(ids, mask, n_experts, max_distance):
    return _pooled_curve(*_pair_statistics(ids, mask, n_experts, max_distance)[1:])


def correlation_function(ids, mask=None, n_experts=None, max_distance: int = 64, block_sizes=(),
                         n_null: int = 4, rng: RngLike = None, *, token_ids=None) -> CorrelationEstimate:
    """Empirical ``C(r)``, per-state ``C_e(r)``, block-pooled ``C_b(r)`` and three shuffle nulls.

    Parameters
    ----------
    ids : array_like of int, shape (n_sequences, n_positions[, top_k])
    mask : array_like of bool, shape (n_sequences, n_positions), optional
    n_experts : int, optional
    max_distance : int, default 64
    block_sizes : sequence of int
        Block sizes for the block-pooled correlations.
    n_null : int, default 4
        Number of shuffles of each null (within position, within sequence, within token id).
    rng : seed or Generator
    token_ids : array_like of int, shape (n_sequences, n_positions), optional
        Token ids of the routed text: enables the within-token null.
    """
    ids, mask, n_experts = as_routing(ids, mask, n_experts)
    n_seq, n, _ = ids.shape
    max_distance = as_int(max_distance, "max_distance", 1, n - 1)
    block_sizes = tuple(as_int(b, "block size", 2) for b in block_sizes)
    gen = as_generator(rng)
    p, n_pairs, c_state = _pair_statistics(ids, mask, n_experts, max_distance)
    by_position = c_state.sum(axis=2)  # NaN propagates where a pair is missing
    usable = np.isfinite(by_position)
    # average over the valid pairs (i, i + r): each position weighted by its number of pairs, so that the
    # last positions of ragged data (a few long sequences) do not weigh as much as the first
    weight = np.where(usable, n_pairs, 0).astype(float)
    n_used = weight.sum(axis=0)
    per_state = np.where(usable[:, :, None], c_state * weight[:, :, None], 0.0).sum(axis=0) \
        / np.maximum(n_used, 1)[:, None]
    values = per_state.sum(axis=1)
    unbias = np.where(n_pairs >= 2, n_pairs / np.maximum(n_pairs - 1, 1), 0.0)  # the N / (N - 1) of the estimator
    pair_weight = np.where(usable & (n_pairs >= 2), float(n_seq), 0.0) * unbias  # (N / n_ij) * n_ij pairs
    pp = np.full(n_pairs.shape, np.nan)
    for r in range(max_distance + 1):
        pp[: n - r, r] = (p[: n - r] * p[r:]).sum(axis=1)
    joint_mean = np.nan_to_num(by_position / np.where(unbias > 0, unbias, 1.0) + pp)
    pp = np.nan_to_num(pp)
    n_valid = mask.sum(axis=0)
    pos_norm = 1.0 / np.maximum(n_used, 1)
    block_of = np.full((len(block_sizes), n), -1, dtype=np.int64)
    for m, b in enumerate(block_sizes):
        block_of[m] = np.arange(n) // b
    phi_state = np.empty((n_seq, max_distance + 1, n_experts))
    phi_block = np.empty((len(block_sizes), n_seq, max_distance + 1))
    K.influence(ids, mask, p, pair_weight, pos_norm, block_of, phi_state, phi_block)
    # ragged or masked data: the rates' own influence and each pair's constant (else sequences of
    # different lengths differ in their expected influence, and an error over sequences is wrong)
    phi = phi_state.sum(axis=2) + _linear_correction(ids, mask, p, unbias * weight * pos_norm[None, :], n_pairs,
                                                     n_valid, joint_mean, pp)
    phi -= phi.mean(axis=0)
    if n_seq <= JACKKNIFE_MAX_SEQUENCES:
        # few sequences: the linearised error misses the products of rates estimated from a handful of
        # sequences (z-scores of uncorrelated data had sd 1.3 at N = 8); the delete-one jackknife keeps
        # them. The influences are rescaled to it, so that every test and bootstrap uses the same error.
        jack = np.array([_pooled_curve(*(_pair_statistics(np.delete(ids, s, axis=0), np.delete(mask, s, axis=0),
                                                              n_experts, max_distance)[1:]))
                         for s in range(n_seq)])
        se_jack = np.sqrt((n_seq - 1) / n_seq * ((jack - jack.mean(axis=0)) ** 2).sum(axis=0))
        se_lin = np.sqrt((phi**2).sum(axis=0) / (n_seq * (n_seq - 1)))
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = np.where((se_lin > 0) & np.isfinite(se_jack), np.maximum(se_jack / se_lin, 1.0), 1.0)
        phi = phi * scale
    phi_state -= phi_state.mean(axis=0)  # per-state errors: the kernel's linearisation (approximate with masks)
    # spread over sequences with the N - 1 divisor (N - 1 degrees of freedom: the window test uses
    # t quantiles, and with few sequences the divisor N would understate the error)
    norm = math.sqrt(n_seq * (n_seq - 1))
    errors = np.sqrt((phi**2).sum(axis=0)) / norm
    per_state_errors = np.sqrt((phi_state**2).sum(axis=0)) / norm
    block_values, block_errors, block_influence = {}, {}, {}
    for m, b in enumerate(block_sizes):
        same = (np.arange(n)[:, None] // b) == ((np.arange(n)[:, None] + np.arange(max_distance + 1)) // b)
        inside = usable & same
        count = np.where(inside, weight, 0.0).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            vals = np.where(inside, by_position * weight, 0.0).sum(axis=0) / count
            infl = (phi_block[m] + _linear_correction(ids, mask, p, unbias * inside * weight, n_pairs, n_valid, joint_mean,
                                                      pp)) / np.where(count > 0, count, np.nan)
        infl = np.where(np.isfinite(infl), infl, 0.0)
        infl -= infl.mean(axis=0)
        vals = np.where(count > 0, vals, np.nan)
        block_values[b] = vals
        block_errors[b] = np.where(count > 0, np.sqrt((infl**2).sum(axis=0)) / norm, np.nan)
        block_influence[b] = infl
    if token_ids is not None:
        token_ids = np.asarray(token_ids)
        if token_ids.shape != (n_seq, n) or not np.issubdtype(token_ids.dtype, np.integer):
            raise InvalidParameterError(f"token_ids must be integers of shape {(n_seq, n)}, got "
                                        f"{token_ids.dtype} {token_ids.shape}")
    null = np.array([_null_curve(_shuffle_within_positions(ids, mask, gen), mask, n_experts, max_distance)
                     for _ in range(n_null)]).reshape(n_null, max_distance + 1)
    null_sequence = np.array([_null_curve(_shuffle_within_sequences(ids, mask, gen), mask, n_experts, max_distance)
                              for _ in range(n_null)]).reshape(n_null, max_distance + 1)
    null_token = np.zeros((0, max_distance + 1))
    if token_ids is not None:
        null_token = np.array([_null_curve(_permute_within_tokens(ids, mask, token_ids, gen), mask, n_experts,
                                           max_distance) for _ in range(n_null)]).reshape(n_null, max_distance + 1)
    return CorrelationEstimate(
        distances=np.arange(max_distance + 1), values=values, errors=errors, per_state=per_state,
        per_state_errors=per_state_errors, null=null, by_position=by_position, block_sizes=block_sizes,
        block_values=block_values, block_errors=block_errors, influence=phi, block_influence=block_influence,
        null_sequence=null_sequence, null_token=null_token,
        n_effective=float(mask.sum(axis=1).sum() ** 2 / (mask.sum(axis=1).astype(float) ** 2).sum()),
    )
