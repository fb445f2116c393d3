"""Correlation length xi from an empirical C(r): exponential fit, summed estimator, and their verdict.

A number is called ``xi`` only when the data support it: ``C(r)`` is exponential on the signal window
(goodness of fit with the covariance of ``C(r)`` over sequences), the window ends before the largest
distance measured (else ``xi`` depends on that cap), and the fitted and summed estimators agree.
Otherwise ``xi`` is NaN and ``message`` says why (``docs/conventions.md``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from .._util import RngLike, as_generator
from ._input import _bootstrap_weights

log = logging.getLogger(__name__)

#: goodness-of-fit p-value below which C(r) is "not exponential"
MIN_P_VALUE = 0.01
#: |xi_fit - xi_sum| / sd(difference) above which the two estimators "disagree"
MAX_DISAGREEMENT_Z = 4.0


@dataclass(frozen=True)
class CorrelationLength:
    """Correlation length of ``C(r)`` with the evidence for calling it one.

    Attributes
    ----------
    xi, error : float
        Exponential-fit ``xi`` and its bootstrap standard error; NaN unless ``success``.
    amplitude : float
        ``A`` in ``A exp(-r / xi)`` (NaN unless ``success``).
    window : tuple of int
        ``(r_lo, r_hi)`` fitted (inclusive): the first run of ``C(r) > 2 se(r)``.
    xi_sum, xi_sum_error : float
        Summed estimator on the same window, corrected exactly for truncation (NaN unless ``success``).
    success : bool
        ``xi`` is supported by the data (see the module docstring).
    message : str
        How ``xi`` was obtained, or every reason why it is n/a.
    chi2, dof, p_value : float, int, float
        Goodness of fit of the exponential on the window with the covariance of ``C(r)`` (from the
        influence functions: the linearised bootstrap covariance; diagonal without influence).
    capped : bool
        The window reaches the largest distance allowed (``r_max``): ``C(r)`` is still above noise
        there, so a fitted decay length would depend on the cap.
    agreement_z : float
        ``(xi_fit - xi_sum) / sd`` with the paired bootstrap sd of the difference (NaN without influence).
    """

    xi: float
    error: float
    amplitude: float
    window: tuple
    xi_sum: float
    xi_sum_error: float
    success: bool
    message: str
    chi2: float = math.nan
    dof: int = 0
    p_value: float = math.nan
    capped: bool = False
    agreement_z: float = math.nan


def _window(values, errors, r_max):
    """``(r_lo, r_hi)``: the longest run of consecutive ``C(r) > 2 se(r)`` in ``1 <= r <= r_max``
    (the first of equally long runs; ``(1, 0)``: none).

    For exponential data this is the run starting at ``r = 1``, ending where ``C(r)`` reaches the
    noise. The run may start later (``C(1)``, or ``C(2)``, in the noise while ``C(r >= 3)`` is far above
    it is a finding, not a reason to give up); the goodness of fit then judges whether ``C(r)`` is
    exponential there.
    """
    top = min(r_max, len(values) - 1)
    best, start = (1, 0), None
    for r in range(1, top + 2):
        significant = r <= top and bool(np.isfinite(values[r]) and values[r] > 2 * errors[r] and values[r] > 0)
        if significant and start is None:
            start = r
        if not significant and start is not None:
            if r - start > best[1] - best[0] + 1:
                best = (start, r - 1)
            start = None
    return best


_LOG_XI_GRID = np.linspace(np.log(0.02), np.log(1e5), 256)


def fit_exponential(r, c, sigma, iterations: int = 40, covariance=None):
    """Least squares of ``c = A exp(-r / xi)`` (``A >= 0``) for many curves at once.

    Profiles out ``A`` (linear) and minimises ``chi2(xi) = c W c - (c W e)^2 / (e W e)``
    (``e = exp(-r / xi)``, ``W = diag(1 / sigma^2)`` or the pseudo-inverse of ``covariance``) over
    ``ln xi``: a grid, then golden-section refinement inside the best grid cell, vectorised over curves.

    Parameters
    ----------
    r : ndarray of shape (R,)
    c : ndarray of shape (B, R)
    sigma : ndarray of shape (R,)
        Standard errors (used when ``covariance`` is None).
    covariance : ndarray of shape (R, R), optional
        Full covariance of ``c`` (generalised least squares).

    Returns
    -------
    amplitude, xi, chi2 : ndarray of shape (B,)
    """
    r = np.asarray(r, dtype=float)
    c = np.asarray(c, dtype=float)
    if covariance is None:
        weight = np.diag(1.0 / np.asarray(sigma, dtype=float) ** 2)
    else:
        weight = np.linalg.pinv(np.asarray(covariance, dtype=float), rcond=1e-10, hermitian=True)
    cw = c @ weight

    def gain(log_xi):  # (B, G) -> (c W e)^2 / (e W e), with A >= 0 enforced
        e = np.exp(-r / np.exp(log_xi)[..., None])  # (B or 1, G, R)
        num = np.einsum("br,bgr->bg", cw, np.broadcast_to(e, (c.shape[0],) + e.shape[1:]))
        den = np.einsum("bgr,rs,bgs->bg", e, weight, e)
        with np.errstate(divide="ignore", invalid="ignore"):  # e underflows for xi << r
            ok = (num > 0) & (den > 0)
            return np.where(ok, num * num / den, -np.inf), np.where(ok, num / den, 0.0)

    g, _ = gain(_LOG_XI_GRID[None, :])
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
    chi2 = np.einsum("br,br->b", cw, c) - g[:, 0]
    return amp[:, 0], np.exp(best), chi2


def summed_xi(c):
    """Summed estimator on a window, exact for a pure exponential: ``xi = -1 / ln rho`` solving
    ``sum_{k=0}^{L-1} rho^k = S / c_0`` (``S`` the sum of ``c`` over the ``L`` distances of the window,
    ``c_0`` its first value).

    Truncating ``sum_r C(r)`` at the window's end biases ``-1 / ln(1 - C(1) / S)`` low (the missing tail
    ``A rho^(L+1) / (1 - rho)``); solving the finite geometric sum removes that bias for exponential data.

    Parameters
    ----------
    c : ndarray of shape (B, L) or (L,)

    Returns
    -------
    ndarray of shape (B,) or float
        NaN where ``S / c_0`` is outside ``(1, L)`` (no decaying exponential matches).
    """
    c = np.asarray(c, dtype=float)
    single = c.ndim == 1
    c = np.atleast_2d(c)
    length = c.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        target = c.sum(axis=1) / c[:, 0]
    ok = (c[:, 0] > 0) & (target > 1) & (target < length)
    lo, hi = np.zeros(len(c)), np.ones(len(c))
    powers = np.arange(length)
    for _ in range(60):  # bisection: sum rho^k increases with rho on [0, 1]
        mid = (lo + hi) / 2
        up = (mid[:, None] ** powers).sum(axis=1) > target
        hi = np.where(up, mid, hi)
        lo = np.where(up, lo, mid)
    with np.errstate(divide="ignore"):
        xi = np.where(ok, -1.0 / np.log((lo + hi) / 2), np.nan)
    return float(xi[0]) if single else xi


def fit_correlation_length(distances, values, errors, *, influence=None, r_max: int | None = None,
                           n_bootstrap: int = 200, rng: RngLike = None,
                           allow_capped: bool = False) -> CorrelationLength:
    """Fit ``C(r) = A exp(-r / xi)`` on the signal window and decide whether ``xi`` is supported.

    Parameters
    ----------
    distances, values, errors : ndarray of shape (R + 1,)
        ``r = 0..R`` (index = distance).
    influence : ndarray of shape (n_sequences, R + 1), optional
        Centred influence functions: the fit is then generalised least squares with their covariance
        ``phi^T phi / N^2``, errors come from refits of bootstrap replicates ``C* = C + (w - 1) phi / N``
        (multinomial ``w`` over sequences), and the agreement of fit and sum is tested.
    r_max : int, optional
        Largest distance allowed in the window (default ``R``).
    allow_capped : bool, default False
        Keep ``xi`` when the window reaches ``r_max`` (the block estimator ``xi(b)``, whose window is
        limited by the block size by construction); ``capped`` still records it.

    Returns
    -------
    CorrelationLength
        ``success`` is True only if the window holds at least 3 distances, the fit converged, the
        goodness-of-fit p-value is at least ``MIN_P_VALUE``, the window does not reach the cap (unless
        ``allow_capped``) and the two estimators agree within ``MAX_DISAGREEMENT_Z`` standard deviations.
    """
    values = np.asarray(values, dtype=float)
    errors = np.asarray(errors, dtype=float)
    r_max = len(values) - 1 if r_max is None else min(r_max, len(values) - 1)
    lo, hi = _window(values, np.maximum(errors, 1e-300), r_max)
    nan = math.nan
    if hi - lo + 1 < 3:
        reason = ("no correlation above noise at r >= 1" if hi < lo else
                  f"C(r) above noise only on {lo} <= r <= {hi}: too few distances to test an exponential")
        return CorrelationLength(nan, nan, nan, (lo, hi), nan, nan, False, f"xi n/a: {reason}")
    r = np.arange(lo, hi + 1, dtype=float)
    c = values[lo: hi + 1]
    sigma = np.maximum(errors[lo: hi + 1], 1e-12 * np.abs(c).max())
    covariance = None
    if influence is not None:
        phi = np.asarray(influence, dtype=float)[:, lo: hi + 1]
        covariance = phi.T @ phi / phi.shape[0] ** 2
    amp, xi, chi2 = (float(v[0]) for v in fit_exponential(r, c[None, :], sigma, covariance=covariance))
    if covariance is None:
        rank = len(r)
    else:
        eig = np.linalg.eigvalsh(covariance)
        rank = int((eig > 1e-10 * eig.max()).sum())
    dof = rank - 2
    p_value = float(sps.chi2.sf(chi2, dof)) if dof > 0 else nan
    xi_sum = summed_xi(c)
    capped = hi >= r_max
    agreement_z = nan
    if influence is not None:
        gen = as_generator(rng)
        n_seq = phi.shape[0]
        w = _bootstrap_weights(n_seq, n_bootstrap, gen) - 1.0
        reps = c[None, :] + (w @ phi) / n_seq
        xs = fit_exponential(r, reps, sigma, covariance=covariance)[1]
        sums = summed_xi(reps)
        error = float(np.std(xs, ddof=1))
        xi_sum_error = float(np.nanstd(sums, ddof=1)) if np.isfinite(sums).sum() > 1 else nan
        diff = xs - sums
        if np.isfinite(diff).sum() > 1 and math.isfinite(xi_sum):
            sd = float(np.nanstd(diff, ddof=1))
            agreement_z = (xi - xi_sum) / sd if sd > 0 else nan
        how = (f"GLS fit on {lo} <= r <= {hi}; errors from {n_bootstrap} bootstrap refits over sequences; "
               f"chi2/dof = {chi2:.1f}/{dof}")
    else:
        h = 1e-3 * xi  # curvature of the profiled chi2 in xi: var(xi) = 2 / chi2''
        chi = _exp_fit_profile_chi2(r, c, sigma, np.array([xi - h, xi, xi + h]))
        curvature = (chi[0] - 2 * chi[1] + chi[2]) / h**2
        error = float(math.sqrt(2.0 / curvature)) if curvature > 0 else nan
        xi_sum_error = nan
        how = f"WLS fit on {lo} <= r <= {hi} (diagonal errors); error from the chi2 curvature; chi2/dof = {chi2:.1f}/{dof}"
    reasons = []
    if not (_LOG_XI_GRID[1] < math.log(xi) < _LOG_XI_GRID[-2]):
        reasons.append("the fit ran to the edge of the search range [0.02, 1e5]")
    if math.isfinite(p_value) and p_value < MIN_P_VALUE:
        reasons.append(f"C(r) not exponential: chi2/dof = {chi2:.1f}/{dof} (p = {p_value:.2g})")
    if capped and not allow_capped:
        reasons.append(f"window reaches the cap r = {r_max}: C(r) is still above noise there "
                       "(raise max_distance, or the correlations are not short-ranged)")
    if math.isfinite(agreement_z) and abs(agreement_z) > MAX_DISAGREEMENT_Z:
        reasons.append(f"fit ({xi:.3g}) and summed ({xi_sum:.3g}) estimators disagree (z = {agreement_z:.1f})")
    elif influence is not None and not math.isfinite(xi_sum):
        reasons.append("summed estimator undefined (C(r) does not decay over the window)")
    stats = dict(chi2=float(chi2), dof=int(dof), p_value=p_value, capped=bool(capped), agreement_z=float(agreement_z))
    if reasons:
        return CorrelationLength(nan, nan, nan, (lo, hi), nan, nan, False, "xi n/a: " + "; ".join(reasons), **stats)
    if lo > 1:
        how += f"; C(r) is in the noise for r < {lo}"
    if capped:
        how += f"; window reaches r_max = {r_max}"
    return CorrelationLength(xi, error, amp, (lo, hi), xi_sum, xi_sum_error, True, how, **stats)


def _exp_fit_profile_chi2(r, c, sigma, xis):
    """Profiled ``chi2`` of one curve at several ``xi``."""
    w = 1.0 / sigma**2
    e = np.exp(-r[None, :] / xis[:, None])
    num = (e * w * c).sum(axis=1)
    den = (e * e * w).sum(axis=1)
    return (w * c * c).sum() - num**2 / den
