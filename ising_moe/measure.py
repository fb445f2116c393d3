"""Empirical spatial statistics of expert sequences, with uncertainties.

Input: top-k expert ids ``ids`` of shape (n_sequences, n_positions) or (n_sequences, n_positions,
top_k) with a boolean ``mask`` (``False`` = padding or an excluded token), or an
:class:`~ising_moe.data.ExpertSequences` for :func:`measure`.

Estimators (``shared/CONVENTIONS.md``)
--------------------------------------
- Rates ``P(e at position i)`` are frequencies over the sequences valid at ``i`` (Wilson intervals).
- ``C_e(i, j) = P(x_i^e x_j^e) - P(x_i^e) P(x_j^e)`` with ``x^e = 1[e in top-k]``, from frequencies
  over sequences at fixed positions (position-dependent marginals: a rate that varies with
  position is not a correlation), times ``N / (N - 1)``, which makes it unbiased when no token is
  masked. ``C(i, j) = sum_e C_e(i, j)`` (for top-1: ``P(s_i = s_j) - sum_e P_i(e) P_j(e)``);
  ``C(r)`` averages ``C(i, i + r)`` over the positions ``i`` with at least two valid pairs.
- Errors of ``C(r)`` come from the influence function (linearised jackknife/bootstrap over
  sequences): ``C(r) - C_true(r) ~ (1 / N) sum_s phi_s(r)``, ``se = sqrt(sum_s phi_s^2) / N``;
  bootstrap replicates reweight the same ``phi`` with multinomial counts over sequences, so
  fits can be bootstrapped without recomputing the correlations (the ``phi`` are centred over
  sequences; with masks their per-sequence constants are neglected).
- Null: the same estimator on sequences shuffled independently at every position (rates kept,
  correlations destroyed).
- Correlation length: weighted least squares of ``C(r) = A exp(-r / xi)`` over ``1 <= r <= r_hi``,
  where ``r_hi`` is the last distance of the first run of ``C(r) > 2 se(r)`` (the fit window is
  reported); error from the bootstrap. Summed estimator on the same window:
  ``xi_sum = -1 / ln(1 - C(1) / sum_r C(r))`` (exact for a pure exponential when ``r_hi >> xi``).
- ``xi`` vs block size ``b``: positions split into consecutive blocks ``[m b, (m + 1) b)``;
  ``C_b(r)`` averages ``C(i, i + r)`` over pairs inside one block (pooled over blocks), and ``xi(b)``
  is its fitted correlation length on ``1 <= r < b``.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as sps

from . import _measure_kernels as K
from ._util import RngLike, as_generator, as_int
from .errors import InvalidParameterError, require

log = logging.getLogger(__name__)

__all__ = [
    "RateEstimate", "position_rates", "PositionTest", "position_dependence", "CorrelationEstimate",
    "correlation_function", "CorrelationLength", "fit_correlation_length", "fit_exponential", "LoadBalance",
    "load_balance",
    "StaticRouting", "static_routing", "LocalRoutingConsistency", "local_routing_consistency",
    "ProbeResult", "positional_probe", "expert_features", "LayerStatistics", "Measurements", "measure",
]


# ----------------------------------------------------------------------------- input
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


# ----------------------------------------------------------------------------- rates
@dataclass(frozen=True)
class RateEstimate:
    """Activation rates ``P(e at position i)`` with Wilson confidence intervals.

    Attributes
    ----------
    counts : ndarray of shape (n_positions, n_experts)
    n_valid : ndarray of shape (n_positions,)
    rates, lower, upper : ndarray of shape (n_positions, n_experts)
    confidence : float
    """

    counts: np.ndarray
    n_valid: np.ndarray
    rates: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    confidence: float


def position_rates(ids, mask=None, n_experts=None, confidence: float = 0.95) -> RateEstimate:
    """Per-position activation rates of every expert (top-k: the rate of being among the top k)."""
    ids, mask, n_experts = as_routing(ids, mask, n_experts)
    n_seq, n, k = ids.shape
    counts = np.zeros((n, n_experts))
    pos = np.broadcast_to(np.arange(n)[None, :, None], ids.shape)
    valid = np.broadcast_to(mask[:, :, None], ids.shape)
    np.add.at(counts, (pos[valid], ids[valid]), 1.0)
    n_valid = mask.sum(axis=0).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = counts / n_valid[:, None]
        z = sps.norm.ppf(0.5 + confidence / 2)
        nv = n_valid[:, None]
        centre = (rates + z * z / (2 * nv)) / (1 + z * z / nv)
        half = z * np.sqrt(rates * (1 - rates) / nv + z * z / (4 * nv * nv)) / (1 + z * z / nv)
    return RateEstimate(counts, n_valid, rates, centre - half, centre + half, confidence)


# ----------------------------------------------------------------------------- position dependence
@dataclass(frozen=True)
class PositionTest:
    """Is the (top-1) expert distribution position dependent?

    Attributes
    ----------
    n_blocks : int
        Positions grouped into this many consecutive blocks.
    chi2, dof, p_value : float
        Pearson chi-square test of the expert x position-block contingency table.
    mutual_information : float
        Plug-in ``I(expert; block)`` in bits.
    mi_miller_madow : float
        Bias-corrected ``I - (R - 1)(C - 1) / (2 N ln 2)`` (occupied rows/columns).
    mi_null_mean, mi_null_sd : float
        Plug-in MI after rotating every sequence (and its mask) by an independent random offset:
        position alignment is destroyed, within-sequence correlations are kept (up to one seam).
    mi_excess : float
        ``I - mi_null_mean``: the position information beyond finite-sample bias.
    mi_error : float
        Bootstrap (over sequences) standard error of ``I``.
    p_value_shuffle : float
        Fraction of rotations with MI at least the observed one (with the +1 rule). This is the
        valid test: the chi-square p-value assumes independent tokens, which neighbouring
        tokens of a correlated sequence are not, so it is too small when ``xi`` is not small.
    """

    n_blocks: int
    chi2: float
    dof: int
    p_value: float
    mutual_information: float
    mi_miller_madow: float
    mi_null_mean: float
    mi_null_sd: float
    mi_excess: float
    mi_error: float
    p_value_shuffle: float


def _mi_bits(table: np.ndarray) -> float:
    total = table.sum()
    if total <= 0:
        return 0.0
    p = table / total
    px = p.sum(axis=1, keepdims=True)
    py = p.sum(axis=0, keepdims=True)
    nz = p > 0
    return float((p[nz] * np.log2(p[nz] / (px @ py)[nz])).sum())


def position_dependence(states, mask=None, n_states=None, n_blocks: int = 16, n_shuffles: int = 100,
                        n_bootstrap: int = 100, rng: RngLike = None) -> PositionTest:
    """Test of position dependence of a state sequence (uses the first rank of top-k input)."""
    ids, mask, n_states = as_routing(states, mask, n_states)
    x = ids[:, :, 0]
    n_seq, n = x.shape
    n_blocks = as_int(n_blocks, "n_blocks", 2, n)
    gen = as_generator(rng)
    block = (np.arange(n) * n_blocks) // n
    seq_tables = np.zeros((n_seq, n_blocks, n_states))
    s_idx, p_idx = np.nonzero(mask)
    np.add.at(seq_tables, (s_idx, block[p_idx], x[s_idx, p_idx]), 1.0)
    table = seq_tables.sum(axis=0)
    rows, cols = table.sum(axis=1) > 0, table.sum(axis=0) > 0
    reduced = table[rows][:, cols]
    if reduced.shape[0] < 2 or reduced.shape[1] < 2:
        chi2, dof, p_value = 0.0, 0, 1.0
    else:
        chi2, p_value, dof, _ = sps.chi2_contingency(reduced, correction=False)
    mi = _mi_bits(table)
    total = table.sum()
    mm = mi - (rows.sum() - 1) * (cols.sum() - 1) / (2 * total * math.log(2))
    tables = np.empty((n_shuffles, n_blocks, n_states))
    K.rotated_tables(np.ascontiguousarray(x), mask, block, n_states, gen.integers(0, n, size=(n_shuffles, n_seq)),
                     tables)
    null = np.array([_mi_bits(t) for t in tables])
    weights = _bootstrap_weights(n_seq, n_bootstrap, gen)
    boot = [_mi_bits(np.tensordot(w, seq_tables, axes=1)) for w in weights]
    return PositionTest(
        n_blocks=n_blocks, chi2=float(chi2), dof=int(dof), p_value=float(p_value), mutual_information=mi,
        mi_miller_madow=float(mm), mi_null_mean=float(null.mean()), mi_null_sd=float(null.std(ddof=1)),
        mi_excess=float(mi - null.mean()), mi_error=float(np.std(boot, ddof=1)),
        p_value_shuffle=float((1 + (null >= mi).sum()) / (1 + n_shuffles)),
    )


# ----------------------------------------------------------------------------- correlations
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


# ----------------------------------------------------------------------------- correlation length
@dataclass(frozen=True)
class CorrelationLength:
    """Exponential-fit correlation length of ``C(r)``.

    Attributes
    ----------
    xi, error : float
        Fitted ``xi`` and its bootstrap (or, without influence, fit) standard error.
    amplitude : float
        ``A`` in ``A exp(-r / xi)``.
    window : tuple of int
        ``(r_lo, r_hi)`` fitted (inclusive).
    xi_sum, xi_sum_error : float
        Summed estimator on the same window.
    success : bool
    message : str
    """

    xi: float
    error: float
    amplitude: float
    window: tuple
    xi_sum: float
    xi_sum_error: float
    success: bool
    message: str


def _window(values, errors, r_max):
    """Last distance of the first run of ``C(r) > 2 se(r)`` starting at r = 1."""
    hi = 0
    for r in range(1, min(r_max, len(values) - 1) + 1):
        if np.isfinite(values[r]) and values[r] > 2 * errors[r] and values[r] > 0:
            hi = r
        else:
            break
    return hi


_LOG_XI_GRID = np.linspace(np.log(0.02), np.log(1e5), 256)


def fit_exponential(r, c, sigma, iterations: int = 40):
    """Weighted least squares of ``c = A exp(-r / xi)`` for many curves at once.

    Profiles out ``A`` (linear) and minimises ``chi2(xi) = sum w c^2 - (sum w c e)^2 / sum w e^2``
    (``e = exp(-r / xi)``, ``w = 1 / sigma^2``) over ``ln xi``: a grid, then golden-section
    refinement inside the best grid cell, all vectorised over curves.

    Parameters
    ----------
    r : ndarray of shape (R,)
    c : ndarray of shape (B, R)
    sigma : ndarray of shape (R,)

    Returns
    -------
    amplitude, xi, chi2 : ndarray of shape (B,)
    """
    w = 1.0 / sigma**2

    def gain(log_xi):  # (B, G) -> (sum w c e)^2 / sum w e^2, with A >= 0 enforced
        e = np.exp(-r[None, None, :] / np.exp(log_xi)[..., None])
        num = np.einsum("br,bgr->bg", c * w, e) if e.shape[0] == c.shape[0] else (c * w) @ e[0].T
        den = (w * e * e).sum(axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):  # e underflows for xi << r
            ok = (num > 0) & (den > 0)
            return np.where(ok, num * num / den, -np.inf), np.where(ok, num / den, 0.0)

    grid = np.broadcast_to(_LOG_XI_GRID, (1, _LOG_XI_GRID.size))
    g, _ = gain(grid)
    k = np.clip(np.argmax(g, axis=1), 1, _LOG_XI_GRID.size - 2)
    lo, hi = _LOG_XI_GRID[k - 1], _LOG_XI_GRID[k + 1]
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(iterations):
        x1 = hi - ratio * (hi - lo)
        x2 = lo + ratio * (hi - lo)
        g1, _ = gain(x1[:, None])
        g2, _ = gain(x2[:, None])
        better = g1[:, 0] > g2[:, 0]
        hi = np.where(better, x2, hi)
        lo = np.where(better, lo, x1)
    best = (lo + hi) / 2
    g, amp = gain(best[:, None])
    chi2 = (w * c * c).sum(axis=1) - g[:, 0]
    return amp[:, 0], np.exp(best), chi2


def _summed(c):
    total = c.sum()
    if total <= c[0] or c[0] <= 0:
        return math.nan
    return -1.0 / math.log(1.0 - c[0] / total)


def fit_correlation_length(distances, values, errors, *, influence=None, r_max: int | None = None,
                           n_bootstrap: int = 200, rng: RngLike = None) -> CorrelationLength:
    """Fit ``C(r) = A exp(-r / xi)`` on the signal window (see the module docstring).

    Parameters
    ----------
    distances, values, errors : ndarray of shape (R + 1,)
        ``r = 0..R`` (index = distance).
    influence : ndarray of shape (n_sequences, R + 1), optional
        Centred influence functions: the error is then the standard deviation of fits to
        bootstrap replicates ``C* = C + (w - 1) phi / N`` (multinomial ``w`` over sequences).
    r_max : int, optional
        Largest distance allowed in the window.
    """
    values = np.asarray(values, dtype=float)
    errors = np.asarray(errors, dtype=float)
    r_max = len(values) - 1 if r_max is None else min(r_max, len(values) - 1)
    hi = _window(values, np.maximum(errors, 1e-300), r_max)
    if hi < 2:
        return CorrelationLength(math.nan, math.nan, math.nan, (1, hi), math.nan, math.nan, False,
                                 "no correlation above noise at r >= 2: xi not determined")
    r = np.arange(1, hi + 1, dtype=float)
    c, sigma = values[1: hi + 1], np.maximum(errors[1: hi + 1], 1e-12 * np.abs(values[1: hi + 1]).max())
    amp, xi, _ = fit_exponential(r, c[None, :], sigma)
    amp, xi = float(amp[0]), float(xi[0])
    xi_sum = _summed(c)
    if influence is not None:
        gen = as_generator(rng)
        n_seq = influence.shape[0]
        w = _bootstrap_weights(n_seq, n_bootstrap, gen) - 1.0
        reps = values[None, 1: hi + 1] + (w @ influence[:, 1: hi + 1]) / n_seq
        xs = fit_exponential(r, reps, sigma)[1]
        sums = np.array([_summed(rep) for rep in reps])
        error = float(np.std(xs, ddof=1))
        xi_sum_error = float(np.nanstd(sums, ddof=1))
        message = f"fit on 1 <= r <= {hi}; error from {n_bootstrap} bootstrap refits over sequences"
    else:
        # curvature of the profiled chi2 in xi: var(xi) = 2 / chi2''
        h = 1e-3 * xi
        chi = _exp_fit_profile_chi2(r, c, sigma, np.array([xi - h, xi, xi + h]))
        curvature = (chi[0] - 2 * chi[1] + chi[2]) / h**2
        error = float(math.sqrt(2.0 / curvature)) if curvature > 0 else math.nan
        xi_sum_error = math.nan
        message = f"fit on 1 <= r <= {hi}; error from the chi2 curvature"
    at_bound = not (_LOG_XI_GRID[1] < math.log(xi) < _LOG_XI_GRID[-2])
    if at_bound:
        return CorrelationLength(xi, error, amp, (1, hi), xi_sum, xi_sum_error, False,
                                 f"xi at the edge of the search range [0.02, 1e5]: {message}")
    return CorrelationLength(xi, error, amp, (1, hi), xi_sum, xi_sum_error, True, message)


def _exp_fit_profile_chi2(r, c, sigma, xis):
    """Profiled ``chi2`` of one curve at several ``xi``."""
    w = 1.0 / sigma**2
    e = np.exp(-r[None, :] / xis[:, None])
    num = (e * w * c).sum(axis=1)
    den = (e * e * w).sum(axis=1)
    return (w * c * c).sum() - num**2 / den


# ----------------------------------------------------------------------------- load balance
@dataclass(frozen=True)
class LoadBalance:
    """Entropy of the expert distribution and its KL divergence to uniform (the paper's MEM), in nats.

    Attributes
    ----------
    entropy_by_position, entropy_by_position_error : ndarray of shape (n_positions,)
        Miller-Madow corrected entropy at each position, delta-method error.
    kl_by_position : ndarray of shape (n_positions,)
        ``ln E - H_i``.
    entropy, entropy_error, kl_uniform, kl_uniform_error : float
        Pooled over positions; bootstrap errors over sequences.
    """

    entropy_by_position: np.ndarray
    entropy_by_position_error: np.ndarray
    kl_by_position: np.ndarray
    entropy: float
    entropy_error: float
    kl_uniform: float
    kl_uniform_error: float


def _entropy(counts, axis=-1):
    total = counts.sum(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = counts / total
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=axis)
    occupied = (counts > 0).sum(axis=axis)
    return h + (occupied - 1) / (2 * np.squeeze(total, axis=axis)), p


def load_balance(ids, mask=None, n_experts=None, n_bootstrap: int = 200, rng: RngLike = None) -> LoadBalance:
    """Entropy and KL-to-uniform of the expert distribution, by position and pooled."""
    ids, mask, n_experts = as_routing(ids, mask, n_experts)
    rates = position_rates(ids, mask, n_experts)
    h_pos, p = _entropy(rates.counts)
    with np.errstate(invalid="ignore"):
        logp = np.where(p > 0, np.log(np.where(p > 0, p, 1)), 0.0)
        second = (p * logp**2).sum(axis=1)
        h_err = np.sqrt(np.maximum(second - (-(p * logp).sum(axis=1)) ** 2, 0) / (rates.counts.sum(axis=1)))
    seq_counts = np.zeros((ids.shape[0], n_experts))
    s_idx = np.broadcast_to(np.arange(ids.shape[0])[:, None, None], ids.shape)
    valid = np.broadcast_to(mask[:, :, None], ids.shape)
    np.add.at(seq_counts, (s_idx[valid], ids[valid]), 1.0)
    h_all = float(_entropy(seq_counts.sum(axis=0))[0])
    gen = as_generator(rng)
    boot = _entropy(_bootstrap_weights(ids.shape[0], n_bootstrap, gen) @ seq_counts)[0]
    log_e = math.log(n_experts)
    return LoadBalance(h_pos, h_err, log_e - h_pos, h_all, float(np.std(boot, ddof=1)), log_e - h_all,
                       float(np.std(boot, ddof=1)))


# ----------------------------------------------------------------------------- static routing
@dataclass(frozen=True)
class StaticRouting:
    """How well position alone predicts the routing (held-out half of the sequences).

    Attributes
    ----------
    accuracy : float
        Mean overlap ``|predicted ∩ actual| / k`` of the position-only router (each position's k
        most frequent experts in the training half) on the test half.
    accuracy_error : float
        Binomial-style standard error over test tokens.
    chance : float
        The same for the best position-free router (the k globally most frequent experts).
    entropy_explained : float
        ``I(expert; position) / H(expert)`` of the top-1 expert (Miller-Madow corrected, full data).
    """

    accuracy: float
    accuracy_error: float
    chance: float
    entropy_explained: float


def static_routing(ids, mask=None, n_experts=None, rng: RngLike = None) -> StaticRouting:
    """The best static (position-only) router and the fraction of routing entropy it explains."""
    ids, mask, n_experts = as_routing(ids, mask, n_experts)
    n_seq, n, k = ids.shape
    gen = as_generator(rng)
    order = gen.permutation(n_seq)
    train, test = order[: n_seq // 2], order[n_seq // 2:]
    train_counts = position_rates(ids[train], mask[train], n_experts).counts
    top_pos = np.argsort(-train_counts, axis=1, kind="stable")[:, :k]
    top_all = np.argsort(-train_counts.sum(axis=0), kind="stable")[:k]
    t_ids, t_mask = ids[test], mask[test]
    hit_pos = (t_ids[:, :, :, None] == top_pos[None, :, None, :]).any(axis=-1).sum(axis=-1) / k
    hit_all = np.isin(t_ids, top_all).sum(axis=-1) / k
    acc = float(hit_pos[t_mask].mean())
    err = float(hit_pos[t_mask].std(ddof=1) / math.sqrt(t_mask.sum()))
    table = position_rates(ids[:, :, :1], mask, n_experts).counts
    h_expert = float(_entropy(table.sum(axis=0))[0])
    mi = _mi_bits(table) * math.log(2)
    occupied_rows, occupied_cols = (table.sum(1) > 0).sum(), (table.sum(0) > 0).sum()
    mi -= (occupied_rows - 1) * (occupied_cols - 1) / (2 * table.sum())
    return StaticRouting(acc, err, float(hit_all[t_mask].mean()), float(max(mi, 0.0) / h_expert) if h_expert > 0
                         else 0.0)


# ----------------------------------------------------------------------------- local routing consistency
@dataclass(frozen=True)
class LocalRoutingConsistency:
    """Local routing consistency metrics of arXiv:2505.16056, over windows of consecutive tokens.

    For a window of ``m`` tokens let ``c_e`` be how many of its tokens activated expert ``e``.

    - **SRP** (segment routing best performance): a fixed expert group per window, "the experts
      with ``c_e >= j``", serves all ``m`` tokens. Over all windows, ``M(j) = sum c_e [c_e >= j]``
      activations are covered by ``P(j) = m #{c_e >= j}`` predicted ones, out of ``A = k m W``
      actual ones; SRP is the best F1 over thresholds, ``max_j 2 M(j) / (P(j) + A)``.
    - **SCH** (segment cache best hit rate) with ``n_cache`` experts: the best cache for a window
      holds its ``n_cache`` most used experts; SCH is the fraction of all activations they serve,
      ``sum_windows (top-n_cache sum of c_e) / (k m W)``.

    Attributes
    ----------
    segment_lengths : ndarray of shape (n_m,)
    srp, srp_error : ndarray of shape (n_m,)
    best_threshold : ndarray of shape (n_m,)
    sch, sch_error : ndarray of shape (n_m, n_experts)
        Column ``c - 1`` is the cache of ``c`` experts.
    n_windows : ndarray of shape (n_m,)
    """

    segment_lengths: np.ndarray
    srp: np.ndarray
    srp_error: np.ndarray
    best_threshold: np.ndarray
    sch: np.ndarray
    sch_error: np.ndarray
    n_windows: np.ndarray


def local_routing_consistency(ids, mask=None, n_experts=None, segment_lengths=(2, 4, 8, 16, 32, 64),
                              n_bootstrap: int = 200, rng: RngLike = None) -> LocalRoutingConsistency:
    """SRP and SCH with bootstrap errors over sequences (see :class:`LocalRoutingConsistency`)."""
    ids, mask, n_experts = as_routing(ids, mask, n_experts)
    n_seq, n, k = ids.shape
    lengths = [as_int(m, "segment length", 1) for m in segment_lengths if m <= n]
    gen = as_generator(rng)
    weights = _bootstrap_weights(n_seq, n_bootstrap, gen)
    srp, srp_err, best_j, sch, sch_err, n_windows = [], [], [], [], [], []
    for m in lengths:
        match = np.empty((n_seq, m + 1))
        pred = np.empty((n_seq, m + 1))
        top = np.empty((n_seq, n_experts))
        nwin = np.empty(n_seq, dtype=np.int64)
        K.segment_statistics(ids, mask, n_experts, m, match, pred, top, nwin)

        def metrics(w):
            windows = w @ nwin
            actual = k * m * windows
            f1 = 2 * (w @ match)[..., 1:] / (m * (w @ pred)[..., 1:] + actual[..., None])
            return f1, (w @ top) / actual[..., None]

        f1, cache = metrics(np.ones(n_seq))
        f1_b, cache_b = metrics(weights)
        srp.append(f1.max())
        best_j.append(int(np.argmax(f1)) + 1)
        srp_err.append(f1_b.max(axis=1).std(ddof=1))
        sch.append(cache)
        sch_err.append(cache_b.std(axis=0, ddof=1))
        n_windows.append(int(nwin.sum()))
    return LocalRoutingConsistency(np.array(lengths), np.array(srp), np.array(srp_err), np.array(best_j),
                                   np.array(sch), np.array(sch_err), np.array(n_windows))


# ----------------------------------------------------------------------------- positional probe
@dataclass(frozen=True)
class ProbeResult:
    """Cross-validated accuracy of a linear probe for position.

    Attributes
    ----------
    features : str
        ``"experts"`` (one-hot over layers and top-k) or ``"hidden:<layer>"``.
    target : str
        ``"parity"`` or ``"block:<n_blocks>"``.
    n_classes : int
    accuracy, accuracy_sd : float
        Mean and standard deviation over the folds.
    chance : float
        Frequency of the most common class.
    n_tokens : int
    """

    features: str
    target: str
    n_classes: int
    accuracy: float
    accuracy_sd: float
    chance: float
    n_tokens: int


def expert_features(experts, mask, n_experts: int, max_tokens: int = 20000, rng: RngLike = None):
    """One-hot features of sampled tokens: for each layer, the multi-hot of its top-k experts.

    Parameters
    ----------
    experts : ndarray of int, shape (n_sequences, n_layers, n_positions, top_k)
    mask : ndarray of bool, shape (n_sequences, n_positions)

    Returns
    -------
    features : ndarray of float32, shape (n_tokens, n_layers * n_experts)
    positions : ndarray of int, shape (n_tokens,)
    tokens : tuple of ndarray
        ``(sequence, position)`` indices of the sampled tokens.
    """
    gen = as_generator(rng)
    s_idx, p_idx = np.nonzero(mask)
    if s_idx.size > max_tokens:
        pick = np.sort(gen.choice(s_idx.size, size=max_tokens, replace=False))
        s_idx, p_idx = s_idx[pick], p_idx[pick]
    n_layers = experts.shape[1]
    feats = np.zeros((s_idx.size, n_layers * n_experts), dtype=np.float32)
    rows = np.arange(s_idx.size)
    for layer in range(n_layers):
        for rank in range(experts.shape[3]):
            feats[rows, layer * n_experts + experts[s_idx, layer, p_idx, rank]] = 1.0
    return feats, p_idx, (s_idx, p_idx)


def positional_probe(features, positions, n_positions: int, block_counts=(2, 8, 32, 128), folds: int = 3,
                     label: str = "experts", rng: RngLike = None) -> list[ProbeResult]:
    """Multinomial logistic regression (scikit-learn) with stratified k-fold CV predicting the token
    parity and the position block (``n_blocks`` equal blocks) from ``features``."""
    require("sklearn", "probe", "the positional probe")
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    gen = as_generator(rng)
    seed = int(gen.integers(2**31))
    positions = np.asarray(positions)
    targets = [("parity", positions % 2)]
    targets += [(f"block:{b}", (positions * b) // n_positions) for b in block_counts if b <= n_positions]
    out = []
    for name, y in targets:
        classes, y = np.unique(y, return_inverse=True)
        counts = np.bincount(y)
        if counts.min() < folds or classes.size < 2:
            log.warning("probe %s skipped: a class has fewer than %d tokens", name, folds)
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300, C=1.0))
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            scores = cross_val_score(model, features, y, cv=cv, scoring="accuracy")
        out.append(ProbeResult(label, name, int(classes.size), float(scores.mean()), float(scores.std(ddof=1)),
                               float(counts.max() / counts.sum()), int(y.size)))
    return out


# ----------------------------------------------------------------------------- whole data set
@dataclass(frozen=True, eq=False)
class LayerStatistics:
    """Every statistic of one MoE layer (top-1 states unless stated)."""

    layer: int
    n_states: int
    rates: RateEstimate
    indicator_rates: RateEstimate | None
    position_test: PositionTest
    correlation: CorrelationEstimate
    indicator_correlation: CorrelationEstimate | None
    xi: CorrelationLength
    xi_by_block: dict
    load: LoadBalance
    static: StaticRouting
    lrc: LocalRoutingConsistency
    dropped_by_position: np.ndarray | None


@dataclass(frozen=True, eq=False)
class Measurements:
    """Result of :func:`measure`: per-layer statistics, probes, and the run's parameters."""

    layers: list
    probes: list
    params: dict
    source: dict

    def layer(self, layer: int) -> LayerStatistics:
        for stats in self.layers:
            if stats.layer == layer:
                return stats
        raise InvalidParameterError(f"layer {layer} was not measured; measured: {[s.layer for s in self.layers]}")


def measure(data, *, layers=None, max_distance: int = 64, block_sizes=(8, 16, 32, 64, 128, 256),
            dropped: str = "exclude", n_null: int = 4, n_bootstrap: int = 200,
            segment_lengths=(2, 4, 8, 16, 32, 64), probe: bool = True, probe_blocks=(2, 8, 32, 128),
            max_probe_tokens: int = 20000, n_position_blocks: int = 16, seed: int = 0,
            progress: bool = False) -> Measurements:
    """All statistics of an :class:`~ising_moe.data.ExpertSequences`, layer by layer.

    Parameters
    ----------
    data : ExpertSequences
    layers : sequence of int, optional
        Model block indices (default all).
    max_distance : int
        Largest ``r`` of ``C(r)`` (capped at ``n_positions - 1``).
    block_sizes : sequence of int
        Block sizes of ``xi`` vs block size (those above ``n_positions`` are dropped).
    dropped : {"exclude", "state", "router"}
        Switch capacity drops: masked out, an extra state, or the router's choice.
    n_null, n_bootstrap : int
        Shuffles for the null, bootstrap replicates over sequences.
    segment_lengths : sequence of int
        Window lengths of the local routing consistency metrics.
    probe : bool
        Run the positional probes (needs scikit-learn, ``pip install 'ising-moe[probe]'``).
    probe_blocks : sequence of int
        Numbers of position blocks the probe predicts (besides parity).
    seed : int
        Seed of every resampling (results are reproducible).
    """
    from tqdm.auto import tqdm

    from .data import read_hidden_states

    layer_ids = list(data.layers) if layers is None else [int(x) for x in layers]
    for layer in layer_ids:
        data.layer_index(layer)
    n = data.n_positions
    max_distance = min(as_int(max_distance, "max_distance", 1), n - 1)
    n_bootstrap = as_int(n_bootstrap, "n_bootstrap", minimum=2)
    n_null = as_int(n_null, "n_null", minimum=0)
    blocks = tuple(b for b in (as_int(b, "block size", minimum=2) for b in block_sizes) if b <= n)
    seeds = np.random.SeedSequence(seed).spawn(len(layer_ids) + 1)
    out = []
    for layer, ss in tqdm(list(zip(layer_ids, seeds)), desc="measure", unit="layer", disable=not progress or None):
        gen = np.random.default_rng(ss)
        x, m, q = data.states(layer, dropped=dropped)
        corr = correlation_function(x, m, q, max_distance, blocks, n_null, gen)
        xi = fit_correlation_length(corr.distances, corr.values, corr.errors, influence=corr.influence,
                                    n_bootstrap=n_bootstrap, rng=gen)
        xi_blocks = {b: fit_correlation_length(corr.distances, corr.block_values[b], corr.block_errors[b],
                                               influence=corr.block_influence[b], r_max=b - 1,
                                               n_bootstrap=n_bootstrap, rng=gen) for b in blocks}
        li = data.layer_index(layer)
        topk_mask = data.mask.copy()
        if data.dropped is not None and dropped == "exclude":
            topk_mask &= ~data.dropped[:, li]
        topk = data.experts[:, li]
        ind_rates = ind_corr = None
        if data.top_k > 1:
            ind_rates = position_rates(topk, topk_mask, data.n_experts)
            ind_corr = correlation_function(topk, topk_mask, data.n_experts, max_distance, (), 0, gen)
        dropped_by_position = None
        if data.dropped is not None:
            dropped_by_position = (data.dropped[:, li] & data.mask).sum(axis=0) / np.maximum(data.mask.sum(axis=0), 1)
        out.append(LayerStatistics(
            layer=layer, n_states=q, rates=position_rates(x, m, q), indicator_rates=ind_rates,
            position_test=position_dependence(x, m, q, min(n_position_blocks, n), rng=gen),
            correlation=corr, indicator_correlation=ind_corr, xi=xi, xi_by_block=xi_blocks,
            load=load_balance(x, m, q, n_bootstrap, gen), static=static_routing(topk, topk_mask, data.n_experts, gen),
            lrc=local_routing_consistency(topk, topk_mask, data.n_experts, segment_lengths, n_bootstrap, gen),
            dropped_by_position=dropped_by_position,
        ))
    probes = []
    if probe:
        gen = np.random.default_rng(seeds[-1])
        idx = [data.layer_index(layer) for layer in layer_ids]
        feats, pos, tokens = expert_features(data.experts[:, idx], data.mask, data.n_experts, max_probe_tokens, gen)
        probes += positional_probe(feats, pos, n, probe_blocks, label="experts", rng=gen)
        if data.path is not None:
            for layer in layer_ids:
                hidden = read_hidden_states(data.path, layer)
                if hidden is not None:
                    probes += positional_probe(hidden[tokens], pos, n, probe_blocks, label=f"hidden:{layer}", rng=gen)
    params = {"layers": layer_ids, "max_distance": max_distance, "block_sizes": list(blocks), "dropped": dropped,
              "n_null": n_null, "n_bootstrap": n_bootstrap, "segment_lengths": list(segment_lengths),
              "probe": probe, "probe_blocks": list(probe_blocks), "max_probe_tokens": max_probe_tokens,
              "n_position_blocks": n_position_blocks, "seed": seed}
    source: dict[str, Any] = {"model_id": data.model_id, "weights": data.weights,
                              "path": None if data.path is None else str(data.path)}
    return Measurements(out, probes, params, source)


# ----------------------------------------------------------------------------- storage
_SCALARS_XI = ("xi", "error", "amplitude", "xi_sum", "xi_sum_error", "success", "message")


def write_measurements(result: Measurements, path, *, overwrite: bool = False, input_path=None,
                       input_sha256: str | None = None) -> None:
    """Write :func:`measure`'s result to HDF5 (kind ``"stats"``), one group ``layer_<L>`` per layer."""
    from .io import atomic_h5, write_array

    attrs = {"model_id": result.source.get("model_id", "unknown"), "weights": result.source.get("weights", "unknown"),
             "input_path": str(input_path or result.source.get("path") or ""), "input_sha256": input_sha256 or ""}
    with atomic_h5(path, kind="stats", params=result.params, seed=result.params.get("seed"), overwrite=overwrite,
                   attrs=attrs) as f:
        for st in result.layers:
            g = f.create_group(f"layer_{st.layer}")
            g.attrs["layer"] = st.layer
            g.attrs["n_states"] = st.n_states
            for key in _SCALARS_XI:
                g.attrs[f"xi_{key}" if key != "xi" else "xi"] = getattr(st.xi, key)
            g.attrs["xi_window"] = np.array(st.xi.window)
            for name, obj in (("position", st.position_test), ("load", st.load), ("static", st.static)):
                for key, value in obj.__dict__.items():
                    if np.ndim(value) == 0:
                        g.attrs[f"{name}_{key}"] = value
            write_array(g, "rates", st.rates.rates, ("position", "state"))
            write_array(g, "rates_lower", st.rates.lower, ("position", "state"))
            write_array(g, "rates_upper", st.rates.upper, ("position", "state"))
            write_array(g, "n_valid", st.rates.n_valid, ("position",))
            c = st.correlation
            write_array(g, "correlation", c.values, ("distance",))
            write_array(g, "correlation_error", c.errors, ("distance",))
            write_array(g, "correlation_null", c.null, ("null", "distance"))
            write_array(g, "state_correlation", c.per_state, ("distance", "state"))
            write_array(g, "state_correlation_error", c.per_state_errors, ("distance", "state"))
            if c.block_sizes:
                coords = {"block_size": np.array(c.block_sizes)}
                write_array(g, "xi_block", [st.xi_by_block[b].xi for b in c.block_sizes], ("block_size",), coords)
                write_array(g, "xi_block_error", [st.xi_by_block[b].error for b in c.block_sizes], ("block_size",),
                            coords)
                write_array(g, "block_correlation", np.array([c.block_values[b] for b in c.block_sizes]),
                            ("block_size", "distance"), coords)
            write_array(g, "entropy_by_position", st.load.entropy_by_position, ("position",))
            write_array(g, "entropy_by_position_error", st.load.entropy_by_position_error, ("position",))
            write_array(g, "kl_by_position", st.load.kl_by_position, ("position",))
            lrc = st.lrc
            coords = {"segment_length": lrc.segment_lengths, "cache_size": np.arange(1, lrc.sch.shape[1] + 1)}
            write_array(g, "srp", lrc.srp, ("segment_length",), coords)
            write_array(g, "srp_error", lrc.srp_error, ("segment_length",), coords)
            write_array(g, "srp_threshold", lrc.best_threshold, ("segment_length",), coords)
            write_array(g, "sch", lrc.sch, ("segment_length", "cache_size"), coords)
            write_array(g, "sch_error", lrc.sch_error, ("segment_length", "cache_size"), coords)
            if st.dropped_by_position is not None:
                write_array(g, "dropped_by_position", st.dropped_by_position, ("position",))
            if st.indicator_rates is not None:
                write_array(g, "indicator_rates", st.indicator_rates.rates, ("position", "expert"))
                write_array(g, "indicator_correlation", st.indicator_correlation.per_state, ("distance", "expert"))
                write_array(g, "indicator_correlation_error", st.indicator_correlation.per_state_errors,
                            ("distance", "expert"))
        if result.probes:
            p = f.create_group("probe")
            for key in ("features", "target"):
                write_array(p, key, np.array([getattr(r, key) for r in result.probes], dtype="S"), ("probe",))
            for key in ("n_classes", "accuracy", "accuracy_sd", "chance", "n_tokens"):
                write_array(p, key, np.array([getattr(r, key) for r in result.probes]), ("probe",))


def load_measurements(path) -> dict[str, Any]:
    """Read a ``stats`` file: ``{"attrs": ..., "params": ..., "layers": {layer: {...}}, "probes": [...]}``.

    Each layer holds ``correlation``, ``correlation_error``, ``correlation_null``, ``rates``,
    ``xi`` (dict of the fit), ``xi_block`` (dict block size -> (xi, error)), and the scalar
    attributes of the group.
    """
    from .errors import DataFormatError
    from .io import open_h5, read_array, read_params

    out: dict[str, Any] = {"layers": {}, "probes": []}
    with open_h5(path, kind="stats") as f:
        out["params"] = read_params(f)
        out["attrs"] = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        for name in sorted(k for k in f if k.startswith("layer_")):
            g = f[name]
            try:
                layer = int(g.attrs["layer"])
            except (KeyError, TypeError, ValueError):
                raise DataFormatError(f"{path}:{name} lacks its layer attribute") from None
            entry = {key: (v.decode() if isinstance(v, bytes) else v) for key, v in g.attrs.items()}
            corr = read_array(g, "correlation", kinds="f", ndim=1)
            entry["correlation"] = corr
            entry["correlation_error"] = read_array(g, "correlation_error", kinds="f", shape=corr.shape)
            entry["correlation_null"] = read_array(g, "correlation_null", kinds="f", ndim=2)
            entry["rates"] = read_array(g, "rates", kinds="f", ndim=2)
            if "block_size" in g:
                sizes = read_array(g, "block_size", kinds="iu", ndim=1)
                xb = read_array(g, "xi_block", kinds="f", shape=sizes.shape)
                eb = read_array(g, "xi_block_error", kinds="f", shape=sizes.shape)
                entry["xi_block"] = {int(b): (float(x), float(e)) for b, x, e in zip(sizes, xb, eb)}
            out["layers"][layer] = entry
        if "probe" in f:
            p = f["probe"]
            cols = {key: read_array(p, key) for key in ("features", "target", "n_classes", "accuracy",
                                                       "accuracy_sd", "chance", "n_tokens")}
            for i in range(len(cols["accuracy"])):
                out["probes"].append({k: (v[i].decode() if isinstance(v[i], bytes) else v[i].item())
                                      for k, v in cols.items()})
    return out
