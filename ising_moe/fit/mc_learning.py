"""Monte Carlo learning (persistent contrastive divergence) of any exponential-family model.

API
---
``mc_learning(theta0, data_moments, model_moments, state, ...) -> MCLearningResult``

- ``theta0`` (K,): the start (e.g. a pseudo-likelihood fit).
- ``data_moments`` (K,): the sufficient statistics of the training data, **mean per unit** (a unit
  is whatever one chain represents: one training sequence for a conditional model, one sequence
  of the model for an unconditional one).
- ``model_moments(theta, state) -> (mean, var, state)``: advances the persistent chains in
  ``state`` (any object; e.g. :class:`~ising_moe.mc.lattice.LatticeState`) under the parameters
  ``theta`` and returns the mean over the chains of their sufficient statistics (K,), which
  estimates the model counterpart of ``data_moments`` (for a conditional model chain ``c`` is
  sampled given the tokens of training unit ``c``, so the mean is the model's expectation on the
  training data), and a per-coordinate variance scale of one chain's statistics (K,), used only to
  precondition (an approximation is fine). The chains must be independent of each other given
  ``theta``. (Means and variances, not the chains' statistics: at OLMoE's size those would be
  1,000 chains x 260,000 coordinates per iteration.)
- ``l2``: prior precision per unit (the gradient of the log-posterior per unit is
  ``data_moments - E_theta[moments] - l2 theta``).

The rule (stated, and tested in ``tests/fit/test_mc_learning.py``):

* **Step.** ``theta += step * g / d`` with ``g = data_moments - mean_c(moments) - l2 theta`` and
  ``d`` the variance scale returned by ``model_moments`` (exponential moving average over
  iterations, weight 0.1, plus ``l2`` and a floor of ``1e-6`` times its mean): a diagonal Fisher
  preconditioner, conservative for conditional models when it is the spread across chains (that
  includes the spread of their tokens, so ``d`` over-estimates the conditional variance and steps
  are smaller). Each coordinate's step is clipped to ``max_step``.
* **Windows and stopping.** Iterations run in windows of ``window`` iterations at a constant
  ``step``, each window cut into ``n_batches`` batches. At the end of a window the batch means of
  ``g`` give its window mean ``gbar`` and standard error ``se`` (batch means: an error that
  accounts for the autocorrelation of the persistent chains). The window is **stationary** when,
  in every block of coordinates (``blocks``; e.g. fields, couplings, cross-layer couplings, so
  that a few slow couplings are not averaged away by thousands of fields),
  ``mean_k (gbar_k / se_k)^2 <= nu / (nu - 2) + 3 sd`` (``nu = n_batches - 1``; ``gbar / se`` is
  Student-t with ``nu`` degrees of freedom at a fixed point, ``(gbar/se)^2`` has mean
  ``nu / (nu - 2)`` and ``sd`` is the standard deviation of the mean of the block's K such
  terms): the parameters no longer drift beyond the noise. The reported statistic ``z2`` is the
  largest ratio of a block's mean to its bound (stationary: ``z2 <= 1``). Then the fit stops; otherwise a new window starts
  from the last iterate, with ``step *= decay`` if the statistic did not fall below the previous
  window's (no progress: steps too large to settle, or oscillating), else with the same step (still
  moving towards the optimum). ``max_windows`` windows without a stationary one:
  ``success = False``.
* **Estimate and error.** ``theta_`` is the mean of the stationary window's iterates
  (Polyak-Ruppert averaging), its error the batch-means standard error of that mean (the Monte
  Carlo error of the learned parameters; it does not include the statistical error of the
  data, which the exact fit's standard errors give). Iterates are autocorrelated over about
  ``1 / step`` iterations, so neighbouring batch means are too: the error is widened by
  ``sqrt((1 + r) / (1 - r))`` with ``r`` the lag-1 correlation of the batch means, pooled (median)
  over each block's coordinates (ten batch means give each coordinate's ``r`` too noisily).
* **Burn-in.** The first ``burn_in`` windows (default 1) are never tested and never averaged: the
  chains and the parameters leave their start (the data, the pseudo-likelihood fit) there.

At a fixed point the iterates are mean-reverting (each step pulls them back), so the net change
over a window is smaller than the batch-to-batch spread suggests and the statistic sits below its
Student-t mean; while the parameters drift it grows like ``n_batches``: the rule is a drift test.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .._util import as_float, as_int
from ..errors import InvalidParameterError

__all__ = ["MCLearningResult", "mc_learning"]


@dataclass(frozen=True, eq=False)
class MCLearningResult:
    """Result of :func:`mc_learning`.

    Attributes
    ----------
    theta : ndarray, shape (K,)
        Mean of the last window's iterates.
    theta_stderr : ndarray, shape (K,)
        Batch-means Monte Carlo error of ``theta``.
    success : bool
        A window was stationary (see the module docstring).
    message : str
    n_iter : int
        Iterations (calls of ``model_moments``).
    n_windows : int
        Tested windows (burn-in excluded).
    step : float
        Step of the last window.
    z2 : ndarray, shape (n_windows,)
        The stationarity statistic of every window: the largest over blocks of
        ``mean_k (gbar_k / se_k)^2`` divided by the block's bound (stationary: ``<= 1``).
    threshold : float
        1.0 (the statistic is already relative to the bounds).
    seconds : float
    gradient : ndarray, shape (K,)
        ``gbar`` of the last window (per unit).
    """

    theta: np.ndarray = field(repr=False)
    theta_stderr: np.ndarray = field(repr=False)
    success: bool
    message: str
    n_iter: int
    n_windows: int
    step: float
    z2: np.ndarray = field(repr=False)
    threshold: float
    seconds: float
    gradient: np.ndarray = field(repr=False)


def stationarity_threshold(n_params: int, n_batches: int) -> float:
    """Bound of ``mean_k t_k^2`` for ``n_params`` Student-t (``nu = n_batches - 1``) z-scores: mean + 3 sd."""
    nu = n_batches - 1
    mean = nu / (nu - 2)
    var = 2 * nu**2 * (nu - 1) / ((nu - 2) ** 2 * (nu - 4))
    return mean + 3 * math.sqrt(var / max(n_params, 1))


def _batch_correlation_factor(batch_means: np.ndarray, blocks) -> np.ndarray:
    """Per coordinate ``sqrt((1 + r) / (1 - r))`` (at least 1), ``r`` the median over the coordinate's
    block of the lag-1 autocorrelations of its batch means (n_batches, K): the AR(1) widening of a
    batch-means error whose batches are not independent."""
    centred = batch_means - batch_means.mean(axis=0)
    denom = (centred**2).sum(axis=0)
    ok = denom > 0
    lag1 = np.where(ok, (centred[1:] * centred[:-1]).sum(axis=0) / np.where(ok, denom, 1.0), np.nan)
    factor = np.ones(batch_means.shape[1])
    for b in blocks:
        if np.isfinite(lag1[b]).any():
            r = min(max(float(np.nanmedian(lag1[b])), 0.0), 0.9)
            factor[b] = math.sqrt((1 + r) / (1 - r))
    return factor


def mc_learning(theta0, data_moments, model_moments, state, *, l2: float = 0.0, step: float = 0.5,
                window: int = 200, n_batches: int = 10, max_windows: int = 12, decay: float = 0.5,
                max_step: float = 1.0, burn_in: int = 1, blocks=None, callback=None) -> tuple[MCLearningResult, object]:
    """Persistent-chain maximum likelihood (see the module docstring for the rule).

    Parameters
    ----------
    theta0, data_moments : ndarray, shape (K,)
    model_moments : callable ``(theta, state) -> (mean (K,), var (K,), state)``
    state : object
        The persistent chains, passed to ``model_moments``.
    l2 : float
        Prior precision per unit.
    step : float
        Initial step (in units of the diagonal Fisher preconditioner).
    window, n_batches, max_windows : int
        ``window`` must be a multiple of ``n_batches`` (>= 5 batches).
    decay : float
        Factor of the step after a window that is not stationary and made no progress.
    max_step : float
        Largest change of one coordinate per iteration.
    burn_in : int
        Windows run before the first tested one (at the initial step).
    blocks : sequence of slices or index arrays, optional
        Groups of coordinates tested separately (default: all in one).
    callback : callable ``(window_index, z2, step, t2) -> None``, optional
        Called after every tested window (``t2``: each coordinate's squared t-statistic, NaN where
        its gradient did not vary).

    Returns
    -------
    result : MCLearningResult
    state : the chains after the last iteration (to continue, or to measure the fitted model).
    """
    theta = np.array(theta0, dtype=float)
    data = np.asarray(data_moments, dtype=float)
    if theta.ndim != 1 or data.shape != theta.shape:
        raise InvalidParameterError(f"theta0 and data_moments must be vectors of one length, got {theta.shape} and "
                                    f"{data.shape}")
    l2 = as_float(l2, "l2", minimum=0.0)
    step = as_float(step, "step", minimum=0.0)
    window = as_int(window, "window", minimum=5)
    n_batches = as_int(n_batches, "n_batches", 6, window)
    if window % n_batches:
        raise InvalidParameterError(f"window ({window}) must be a multiple of n_batches ({n_batches})")
    max_windows = as_int(max_windows, "max_windows", minimum=1)
    decay = as_float(decay, "decay", minimum=0.0)
    max_step = as_float(max_step, "max_step", minimum=0.0)
    burn_in = as_int(burn_in, "burn_in", minimum=0)
    k = theta.size
    size = window // n_batches
    blocks = [np.arange(k)] if blocks is None else [np.arange(k)[b] for b in blocks]
    blocks = [b for b in blocks if b.size]
    bounds = [stationarity_threshold(b.size, n_batches) for b in blocks]
    threshold = 1.0
    t_start = time.perf_counter()
    d = None
    z2s, n_iter = [], 0
    success = False
    theta_b = g_b = None
    for w in range(burn_in + max_windows):
        theta_b = np.zeros((n_batches, k))
        g_b = np.zeros((n_batches, k))
        for t in range(window):
            mean, var, state = model_moments(theta, state)
            mean, var = np.asarray(mean, dtype=float), np.asarray(var, dtype=float)
            if mean.shape != (k,) or var.shape != (k,):
                raise InvalidParameterError(f"model_moments must return a mean and a variance of {k} coordinates, "
                                            f"got shapes {mean.shape} and {var.shape}")
            d = var if d is None else 0.9 * d + 0.1 * var
            g = data - mean - l2 * theta
            precision = d + l2 + 1e-6 * max(float(d.mean()), 1e-12)
            theta = theta + np.clip(step * g / precision, -max_step, max_step)
            theta_b[t // size] += theta / size
            g_b[t // size] += g / size
            n_iter += 1
        if w < burn_in:
            continue
        se = g_b.std(axis=0, ddof=1) / math.sqrt(n_batches)
        ok = se > 0
        t2 = np.where(ok, (g_b.mean(axis=0) / np.where(ok, se, 1.0)) ** 2, np.nan)
        z2 = max((float(np.nanmean(t2[b])) if ok[b].any() else 0.0) / bound for b, bound in zip(blocks, bounds))
        z2s.append(z2)
        if callback is not None:
            callback(w - burn_in, z2, step, t2)
        if z2 <= threshold:
            success = True
            break
        if len(z2s) > 1 and z2 >= z2s[-2]:
            step *= decay
    estimate = theta_b.mean(axis=0)
    stderr = theta_b.std(axis=0, ddof=1) / math.sqrt(n_batches) * _batch_correlation_factor(theta_b, blocks)
    if success:
        message = (f"stationary after {burn_in} burn-in and {len(z2s)} tested window(s) of {window} iterations: "
                   f"largest block mean t^2 / bound = {z2s[-1]:.2f} <= 1")
    else:
        message = (f"no stationary window in {max_windows} windows of {window} iterations (last largest block mean "
                   f"t^2 / bound = {z2s[-1]:.2f} > 1): more windows, a larger window or a better start")
    result = MCLearningResult(theta=estimate, theta_stderr=stderr, success=success, message=message, n_iter=n_iter,
                              n_windows=len(z2s), step=step, z2=np.array(z2s), threshold=threshold,
                              seconds=time.perf_counter() - t_start, gradient=g_b.mean(axis=0))
    return result, state
