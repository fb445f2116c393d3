"""Activation rates by position (Wilson intervals) and tests of position dependence."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from .._util import RngLike, as_generator, as_int
from . import _kernels as K
from ._input import _bootstrap_weights, as_routing

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class PositionTest:
    """Is the (top-1) expert distribution position dependent?

    Attributes
    ----------
    n_blocks : int
        Positions grouped into this many consecutive blocks.
    chi2, dof, chi2_p_value_iid : float
        Pearson chi-square test of the expert x position-block contingency table. Its p-value assumes
        independent tokens, which neighbouring tokens of a correlated sequence are not: it is far
        too small whenever ``C(r)`` is not negligible (e.g. 3e-196 on a position-independent chain).
        Kept for reference only; never report it as the p-value.
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
        valid test (exact under position independence, whatever the correlations along the chain)
        and the one :attr:`p_value` returns.
    """

    n_blocks: int
    chi2: float
    dof: int
    chi2_p_value_iid: float
    mutual_information: float
    mi_miller_madow: float
    mi_null_mean: float
    mi_null_sd: float
    mi_excess: float
    mi_error: float
    p_value_shuffle: float

    @property
    def p_value(self) -> float:
        """The valid p-value of position dependence: the rotation test (``p_value_shuffle``)."""
        return self.p_value_shuffle


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
        n_blocks=n_blocks, chi2=float(chi2), dof=int(dof), chi2_p_value_iid=float(p_value), mutual_information=mi,
        mi_miller_madow=float(mm), mi_null_mean=float(null.mean()), mi_null_sd=float(null.std(ddof=1)),
        mi_excess=float(mi - null.mean()), mi_error=float(np.std(boot, ddof=1)),
        p_value_shuffle=float((1 + (null >= mi).sum()) / (1 + n_shuffles)),
    )
