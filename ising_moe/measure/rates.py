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
        Positions grouped into this many consecutive blocks of equal length.
    block_length : int
        Positions per block, ``n_positions // n_blocks``; the last ``n_positions mod n_blocks``
        positions (fewer than ``n_blocks``) belong to no block and are left out of every statistic
        (blocks of unequal length could not be reflected onto each other).
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
        Plug-in MI after reversing each sequence (with its mask) with probability 1/2, independently:
        every sequence stays one contiguous chain with all its correlations. NaN with fewer than 2
        sequences.
    mi_excess : float
        ``I - mi_null_mean``: the position information beyond finite-sample bias (NaN with fewer than
        2 sequences).
    mi_error : float
        Bootstrap (over sequences) standard error of ``I`` (NaN with fewer than 2 sequences).
    p_value_shuffle : float
        Fraction of reflections with MI at least the observed one (with the +1 rule); the p-value that
        :attr:`p_value` returns. Exact for independent sequences of a stationary reversible chain
        (detailed balance, e.g. any Potts chain; a reversed sequence then has the same distribution,
        whatever the correlations along it); for a non-reversible chain it is exact for the counts of
        each block and their covariances but not beyond. It tests position effects that differ between
        the two ends of the sequences (a start-of-sequence effect, a trend); an effect symmetric about
        the middle is invisible to it. Rotations, the former null, reject too often on open chains
        (``benchmarks/calibrate_position.py``: 0.095 at the 5% level with ``xi = 30``, blocks of 4
        positions, by single positions; 0.083 by whole blocks, whose rotated sequences are misaligned
        with each other). NaN when fewer than 2 sequences have tokens in the blocks: a single
        sequence's MI is the same reflected or not (see ``message``).
    n_sequences : int
        Sequences with at least one valid token in the blocks.
    message : str
        How the p-value was obtained, or why it is n/a.
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
    block_length: int = 0
    n_sequences: int = 0
    message: str = ""

    @property
    def p_value(self) -> float:
        """The p-value of position dependence: the reflection test (``p_value_shuffle``; NaN when n/a)."""
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
    """Test of position dependence of a state sequence (uses the first rank of top-k input).

    Positions are split into ``n_blocks`` consecutive blocks of ``n_positions // n_blocks`` positions
    (the remainder at the end is left out); the statistic is the mutual information between state
    and block. The null reverses each sequence, mask included, with probability 1/2
    (``reflected_tables``), exact for a stationary reversible chain (see :class:`PositionTest`).
    Rotating each sequence by a random offset (the former null) joins two unrelated pieces of an
    open chain inside a block (by single positions) or misaligns the sequences' block profiles (by
    whole blocks): both reject too often on correlated chains (0.095 and 0.083 at the 5% level,
    ``xi = 30``, blocks of 4).

    Parameters
    ----------
    states : array_like of shape (n_sequences, n_positions) or (n_sequences, n_positions, k)
    mask : array_like of bool, optional
        Valid tokens (padding, dropped tokens: False).
    n_states : int, optional
    n_blocks : int, default 16
        Between 2 and ``n_positions``.
    n_shuffles : int, default 100
        Random reflections of the null.
    n_bootstrap : int, default 100
        Bootstrap replicates over sequences of the MI error.
    rng : seed or Generator

    Returns
    -------
    PositionTest
        ``p_value`` NaN (with ``message``) when fewer than 2 sequences have tokens in the blocks.
    """
    ids, mask, n_states = as_routing(states, mask, n_states)
    x = ids[:, :, 0]
    n_seq, n = x.shape
    n_blocks = as_int(n_blocks, "n_blocks", 2, n)
    n_shuffles = as_int(n_shuffles, "n_shuffles", 1)
    gen = as_generator(rng)
    length = n // n_blocks
    used = n_blocks * length
    seq_tables = np.zeros((n_seq, n_blocks, n_states))
    s_idx, p_idx = np.nonzero(mask[:, :used])
    np.add.at(seq_tables, (s_idx, p_idx // length, x[s_idx, p_idx]), 1.0)
    table = seq_tables.sum(axis=0)
    rows, cols = table.sum(axis=1) > 0, table.sum(axis=0) > 0
    reduced = table[rows][:, cols]
    if reduced.shape[0] < 2 or reduced.shape[1] < 2:
        chi2, dof, p_value = 0.0, 0, 1.0
    else:
        chi2, p_value, dof, _ = sps.chi2_contingency(reduced, correction=False)
    mi = _mi_bits(table)
    total = table.sum()
    mm = mi - (rows.sum() - 1) * (cols.sum() - 1) / (2 * total * math.log(2)) if total > 0 else 0.0
    informative = seq_tables.sum(axis=(1, 2)) > 0
    n_used = int(informative.sum())
    left_out = f"; the last {n - used} positions are in no block" if used < n else ""
    common = dict(n_blocks=n_blocks, block_length=length, chi2=float(chi2), dof=int(dof),
                  chi2_p_value_iid=float(p_value), mutual_information=mi, mi_miller_madow=float(mm),
                  n_sequences=n_used)
    if n_used < 2:
        # reversing one sequence only permutes the rows of the table: its MI never changes
        nan = math.nan
        return PositionTest(**common, mi_null_mean=nan, mi_null_sd=nan, mi_excess=nan, mi_error=nan,
                            p_value_shuffle=nan,
                            message=f"position test n/a: {n_used} sequence(s) with tokens; reversing one "
                                    "sequence leaves its MI unchanged, so at least 2 are needed")
    seq_tables = seq_tables[informative]  # sequences without tokens add nothing to any table
    tables = np.empty((n_shuffles, n_blocks, n_states))
    K.reflected_tables(seq_tables, gen.random((n_shuffles, n_used)) < 0.5, tables)
    null = np.array([_mi_bits(t) for t in tables])
    weights = _bootstrap_weights(n_used, n_bootstrap, gen)
    boot = [_mi_bits(np.tensordot(w, seq_tables, axes=1)) for w in weights]
    return PositionTest(
        **common, mi_null_mean=float(null.mean()), mi_null_sd=float(null.std(ddof=1)) if n_shuffles > 1 else math.nan,
        mi_excess=float(mi - null.mean()), mi_error=float(np.std(boot, ddof=1)) if n_bootstrap > 1 else math.nan,
        p_value_shuffle=float((1 + (null >= mi).sum()) / (1 + n_shuffles)),
        message=f"reflection test: {n_used} sequences, blocks of {length} positions, {n_shuffles} random "
                f"reflections{left_out}",
    )
