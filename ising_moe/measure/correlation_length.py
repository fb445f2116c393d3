"""Correlation length xi from an empirical C(r): weighted exponential fit and summed estimator."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from .._util import RngLike, as_generator
from ._input import _bootstrap_weights

log = logging.getLogger(__name__)


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
