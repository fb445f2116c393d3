"""Goodness of fit of chain models: the model's exact ``C(r)`` in the empirical estimator's terms.

The empirical ``C(r)`` (:func:`ising_moe.measure.correlation_function`) uses frequencies over the
sequences valid at fixed positions: with ``V_i`` the sequences valid at ``i``, ``V_ij`` those
valid at ``i`` and ``j = i + r``, ``n_i = |V_i|``, ``m = |V_ij|`` and ``x_si`` one-hot,

.. math::

    \\hat c(i, j) = \\frac{m}{m - 1} \\Big[\\frac{1}{m}\\sum_{s \\in V_{ij}} x_{si} \\cdot x_{sj}
                   - \\hat p_i \\cdot \\hat p_j\\Big], \\qquad
    \\hat p_i = \\frac{1}{n_i} \\sum_{s \\in V_i} x_{si},

averaged over the positions with ``m >= 2``. A conditional model makes the sequences independent
but not identically distributed (each has its own tokens; a mixture's sequences are i.i.d. draws
of the mixture). The model's counterpart is the exact expectation of the same estimator on the
same sequences, masks and tokens: with ``P_s(i)`` the model marginals of sequence ``s`` and
``J_s(i, j) = P_s(s_i = s_j)``,

.. math::

    E[\\hat p_i \\cdot \\hat p_j] = \\frac{1}{n_i n_j}\\Big[A_i \\cdot A_j
        - \\sum_{V_{ij}} P_s(i) \\cdot P_s(j) + \\sum_{V_{ij}} J_s(i, j)\\Big],
    \\qquad A_i = \\sum_{V_i} P_s(i),

so ``E[c(i, j)] = m/(m-1) [sum_{V_ij} J_s / m - E[p_i . p_j]]``. Without masks this is the mean
within-sequence connected correlation plus the covariance over sequences of ``P_s(i)`` and
``P_s(j)``: token statistics (and a mixture's components) produce correlations that a
position-only model attributes to couplings. ``J_s`` comes from exact transfer-matrix
propagation, stopped when the conditionals given ``s_i`` agree to ``tol`` in total variation (the
dropped connected part is below ``tol``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from ..._util import as_int
from ...errors import InvalidParameterError
from . import _correlation_kernels as CK
from .model import ConditionalChain
from .objective import N_CHUNKS
from .params import ConditionalData

__all__ = ["GoodnessOfFit", "goodness_of_fit", "model_correlation_function"]

#: level of each of the two tests behind :attr:`GoodnessOfFit.consistent`
GOF_ALPHA = 0.01


def model_correlation_function(model: ConditionalChain, tokens=None, mask=None, lengths=None, *,
                               n_sites: int | None = None, max_distance: int = 64, tol: float = 1e-15,
                               by_position: bool = False):
    """Expectation of the empirical ``C(r)`` estimator under a fitted (conditional, mixture) chain.

    Parameters
    ----------
    model : ConditionalChain or ChainMixture
        Fitted.
    tokens : array_like of int, shape (n_sequences, n_sites), optional
        Token ids of the sequences (required if the model has token fields).
    mask : array_like of bool, shape (n_sequences, n_sites), optional
        Valid (observed) positions, as passed to the empirical estimator.
    lengths : array_like of int, optional
        Chain length of each sequence (default: up to its last valid position).
    n_sites : int, optional
        Positions when neither ``tokens`` nor ``mask`` gives the shape (with ``mask``/``tokens``
        absent: ``n_sequences`` is taken as ``len(lengths)``).
    max_distance : int, default 64
    tol : float, default 1e-15
        Truncation of the connected part (see the module docstring).
    by_position : bool, default False
        Also return ``E[c(i, i + r)]``, shape (n_sites, R + 1) (NaN where fewer than two pairs).

    Returns
    -------
    ndarray of shape (R + 1,)
        ``C(r)`` for ``r = 0..max_distance`` (NaN where no position has two valid pairs); with
        ``by_position``, the pair ``(C(r), E[c(i, i + r)])``.
    """
    model._check_fitted()
    shape_src = tokens if tokens is not None else mask
    if shape_src is None:
        if lengths is None or n_sites is None:
            raise InvalidParameterError("pass tokens or mask (or lengths and n_sites) to set the sequences")
        shape = (len(lengths), as_int(n_sites, "n_sites", minimum=2))
    else:
        shape = np.shape(shape_src)
    data = ConditionalData.from_arrays(np.zeros(shape, dtype=np.int64), tokens, mask, lengths, model.n_states_)
    chain = data.chain
    n = chain.n_sites
    if n > model.n_sites_:
        raise InvalidParameterError(f"sequences of {n} positions, the model has {model.n_sites_}")
    max_distance = as_int(max_distance, "max_distance", 1, n - 1)
    if model.vocabulary_ is not None:
        if data.tokens is None:
            raise InvalidParameterError("this model has token fields: pass the sequences' tokens")
        rows = model.vocabulary_.rows(data.tokens)
    else:
        rows = np.zeros(shape, np.int64)
    layout = model.layout_
    params = layout.expand(model.theta_)
    tables = layout.tables(params)
    pi = np.exp(params["log_pi"])
    a_sum = np.empty((n, layout.n_states))
    s1 = np.empty((n, max_distance + 1))
    s2 = np.empty((n, max_distance + 1))
    CK.model_pair_sums(chain.observed, rows, chain.lengths, *tables, layout.max_range, pi, max_distance, float(tol),
                       N_CHUNKS, a_sum, s1, s2)
    values, by_pos = expected_estimator(chain.observed, a_sum, s1, s2, max_distance, by_position=True)
    return (values, by_pos) if by_position else values


def expected_estimator(observed, a_sum, s1, s2, max_distance: int, *, by_position: bool = False):
    """Exact expectation of the empirical ``C(r)`` estimator from the model's per-position sums
    (module docstring): ``a_sum[i] = sum_{V_i} P_s(i)`` (n, q), ``s1[i, r] = sum_{V_ij} J_s(i, i + r)``
    and ``s2[i, r] = sum_{V_ij} P_s(i) . P_s(i + r)`` (n, R + 1). Shared by every chain model."""
    obs = np.asarray(observed, dtype=float)
    n = obs.shape[1]
    n_i = obs.sum(axis=0)
    by_pos = np.full((n, max_distance + 1), np.nan)
    for r in range(max_distance + 1):
        m = (obs[:, : n - r] * obs[:, r:]).sum(axis=0)
        ok = m >= 2
        if not ok.any():
            continue
        i = np.flatnonzero(ok)
        pp = ((a_sum[i] * a_sum[i + r]).sum(axis=1) - s2[i, r] + s1[i, r]) / (n_i[i] * n_i[i + r])
        by_pos[i, r] = m[i] / (m[i] - 1) * (s1[i, r] / m[i] - pp)
    with np.errstate(invalid="ignore"):
        values = np.nanmean(np.where(np.isfinite(by_pos), by_pos, np.nan), axis=0) if np.isfinite(by_pos).any() \
            else np.full(max_distance + 1, np.nan)
    return (values, by_pos) if by_position else values


@dataclass(frozen=True)
class GoodnessOfFit:
    """Model ``C(r)`` against the empirical one on ``r_min..r_max``.

    Attributes
    ----------
    distances : ndarray of int
    model, empirical, errors : ndarray
    z : ndarray
        ``(empirical - model) / errors`` per distance.
    chi2_diagonal, dof : float, int
        ``sum z^2`` and the number of distances (the errors are correlated across ``r``: a summary,
        not a test).
    chi2 : float
        ``d^T Sigma^{-1} d`` with ``Sigma`` the covariance of the empirical ``C(r)`` from the
        sequences' influence functions (NaN without them).
    p_value : float
        Of ``chi2`` under Hotelling's ``T^2`` distribution with the covariance estimated from
        ``n_sequences`` (NaN without influence functions or with fewer sequences than distances).
    max_abs_z : float
    message : str
    """

    distances: np.ndarray
    model: np.ndarray
    empirical: np.ndarray
    errors: np.ndarray
    z: np.ndarray
    chi2_diagonal: float
    dof: int
    chi2: float
    p_value: float
    max_abs_z: float
    message: str

    @property
    def max_z_p_value(self) -> float:
        """P-value of the largest ``|z|`` among the ``dof`` distances (Sidak: ``1 - (1 - p_1)^dof``
        with ``p_1`` its two-sided normal p-value; exact for independent distances, conservative for
        the positively correlated ones of ``C(r)``)."""
        if not math.isfinite(self.max_abs_z) or self.dof < 1:
            return math.nan
        p1 = 2.0 * sps.norm.sf(self.max_abs_z)
        return float(-math.expm1(self.dof * math.log1p(-min(p1, 1.0))) if p1 < 1 else 1.0)

    @property
    def z_threshold(self) -> float:
        """The ``|z|`` above which one distance alone rejects at level :data:`GOF_ALPHA` (Sidak)."""
        if self.dof < 1:
            return math.nan
        per = -math.expm1(math.log1p(-GOF_ALPHA) / self.dof)
        return float(sps.norm.isf(per / 2))

    @property
    def consistent(self) -> bool:
        """Both calibrated tests accept at level :data:`GOF_ALPHA`: the chi-square (Hotelling) and
        the largest ``|z|`` with its multiplicity correction (a false alarm in at most ~2% of
        datasets where the model is true; ``|z| <= 3`` at every one of 32 distances, the former
        rule, false-alarmed in ~1 of 9)."""
        return bool(math.isfinite(self.p_value) and self.p_value >= GOF_ALPHA
                    and math.isfinite(self.max_z_p_value) and self.max_z_p_value >= GOF_ALPHA)


def goodness_of_fit(model_values, empirical, errors=None, influence=None, *, r_min: int = 1,
                    r_max: int | None = None) -> GoodnessOfFit:
    """Residual z-scores and chi-square of a model ``C(r)`` against the empirical estimate.

    Parameters
    ----------
    model_values : ndarray, shape (R + 1,)
        E.g. from :func:`model_correlation_function` on the sequences of the empirical estimate
        (held-out sequences: the model was not fitted to them).
    empirical : CorrelationEstimate or ndarray of shape (R + 1,)
        The empirical ``C(r)`` (:func:`ising_moe.measure.correlation_function`); with an array, pass
        ``errors`` and, for the correlated chi-square, ``influence`` (n_sequences, R + 1).
    r_min, r_max : int
        Distances compared (default ``1..R``).

    Notes
    -----
    The model's own uncertainty (from its fitted parameters) is neglected: it is fitted on other,
    usually more, sequences than the test estimate uses.
    """
    if hasattr(empirical, "values"):
        values, errors, influence = empirical.values, empirical.errors, empirical.influence
    else:
        values = np.asarray(empirical, dtype=float)
        if errors is None:
            raise InvalidParameterError("pass errors with an empirical C(r) array")
    model_values = np.asarray(model_values, dtype=float)
    r_max = len(values) - 1 if r_max is None else as_int(r_max, "r_max", r_min, len(values) - 1)
    r = np.arange(as_int(r_min, "r_min", 0, r_max), r_max + 1)
    d = values[r] - model_values[r]
    se = np.asarray(errors, dtype=float)[r]
    ok = np.isfinite(d) & (se > 0)
    z = np.where(ok, d / np.where(ok, se, 1.0), np.nan)
    message = f"{int(ok.sum())} distances in {r[0]}..{r[-1]}"
    chi2 = p_value = math.nan
    if influence is not None and ok.any():
        phi = np.asarray(influence, dtype=float)[:, r[ok]]
        n_seq, dim = phi.shape
        if n_seq > dim + 1:
            cov = phi.T @ phi / n_seq**2
            try:
                chi2 = float(d[ok] @ np.linalg.solve(cov, d[ok]))
                # Hotelling: T^2 (N - p) / ((N - 1) p) ~ F(p, N - p) with the covariance estimated from N
                p_value = float(sps.f.sf(chi2 * (n_seq - dim) / ((n_seq - 1) * dim), dim, n_seq - dim))
            except np.linalg.LinAlgError:
                message += "; singular covariance: no correlated chi-square"
        else:
            message += f"; {n_seq} sequences are too few for the covariance of {dim} distances"
    return GoodnessOfFit(distances=r, model=model_values[r], empirical=values[r], errors=se, z=z,
                         chi2_diagonal=float(np.nansum(z**2)), dof=int(ok.sum()), chi2=chi2, p_value=p_value,
                         max_abs_z=float(np.nanmax(np.abs(z))) if ok.any() else math.nan, message=message)
