"""Error analysis of correlated samples: autocorrelation, R-hat, effective sample size.

Conventions: a series ``x`` of shape (n_samples,) or (n_chains, n_samples). The integrated
autocorrelation time is

.. math:: \\tau = 1 + 2 \\sum_{t \\ge 1} \\rho(t) = -1 + 2 \\sum_{k \\ge 0} \\Gamma_k, \\qquad
          \\Gamma_k = \\rho(2k) + \\rho(2k + 1),

with ``rho`` the normalised autocorrelation function (averaged over chains, computed by FFT),
estimated with Geyer's initial monotone sequence: the pair sums ``Gamma_k`` of a reversible chain
are positive and decreasing, so the sum stops before the first ``Gamma_k <= 0`` and each term is
replaced by the minimum of those before it. Unlike a window on ``rho`` itself this stays valid for
anticorrelated series (``rho(1) < 0``, ``tau < 1``: e.g. Wolff flipping a whole chain each sweep).
A period-2 component (``rho`` alternating without decay) is caught by the same estimate on the
means of consecutive pairs, and ``tau`` is never reported below the statistical resolution of its
own estimate, so an error bar cannot collapse to zero (:func:`integrated_time`). The error of the mean of ``N`` samples is ``sqrt(var tau / N)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import fft as _fft

from .errors import InvalidParameterError

__all__ = [
    "Stats",
    "autocorrelation",
    "integrated_time",
    "split_rhat",
    "effective_sample_size",
    "estimate",
    "MIN_N_OVER_TAU",
    "MAX_RHAT",
]


#: a chain shorter than this many autocorrelation times gives too small errors
MIN_N_OVER_TAU = 50
#: split R-hat above this means the chains have not mixed
MAX_RHAT = 1.01


def _as_chains(x) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise InvalidParameterError(
            f"expected samples of shape (n_samples,) or (n_chains, n_samples) with n_samples >= 2, got {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise InvalidParameterError("samples must be finite")
    return arr


def autocorrelation(x) -> np.ndarray:
    """Normalised autocorrelation ``rho(t)``, ``t = 0..n_samples-1``, averaged over chains.

    Computed with a zero-padded FFT (``scipy.fft``), each chain centred on its own mean.
    """
    arr = _as_chains(x)
    n = arr.shape[1]
    centred = arr - arr.mean(axis=1, keepdims=True)
    size = _fft.next_fast_len(2 * n)
    f = _fft.rfft(centred, n=size, axis=1)
    acf = _fft.irfft(f * np.conj(f), n=size, axis=1)[:, :n].mean(axis=0)
    if acf[0] <= 0:
        return np.concatenate([[1.0], np.zeros(n - 1)])  # constant series: no correlation
    return acf / acf[0]


def _geyer_time(arr: np.ndarray) -> tuple[float, int]:
    """Geyer's initial monotone sequence estimate of ``tau`` and the number of lags it summed."""
    rho = autocorrelation(arr)
    n_pairs = rho.size // 2
    pairs = rho[0: 2 * n_pairs: 2] + rho[1: 2 * n_pairs: 2]
    positive = pairs > 0
    n_kept = n_pairs if positive.all() else int(np.argmin(positive))
    if n_kept == 0:  # rho(1) <= -1: alternating to the resolution of the data
        return 0.0, 2
    return 2.0 * float(np.minimum.accumulate(pairs[:n_kept]).sum()) - 1.0, 2 * n_kept


def integrated_time(x) -> float:
    """Integrated autocorrelation time (Geyer's initial monotone sequence; see the module notes).

    Geyer's estimate is valid for reversible chains, anticorrelated ones included. Below its own
    resolution ``sqrt(2 L / N)`` (``L`` lags summed, ``N`` samples in all) it is not: this happens
    when a period-2 component (e.g. a whole-chain flip every sweep) makes ``rho(t)`` alternate
    without decaying. Then the estimate comes from the means of consecutive pairs, in which that
    component cancels: ``tau = 2 var(pair means) tau_pairs / var(x)``. The result is never below the
    resolution, so an error bar built on it cannot vanish.

    Parameters
    ----------
    x : array_like of shape (n_samples,) or (n_chains, n_samples)

    Returns
    -------
    float
        ``tau`` in samples, ``> 0``; below 1 for anticorrelated series (AR(1) with coefficient
        ``phi``: ``(1 + phi) / (1 - phi)``).
    """
    arr = _as_chains(x)
    tau, n_lags = _geyer_time(arr)
    resolution = math.sqrt(2.0 * n_lags / arr.size)
    half = arr.shape[1] // 2
    var = arr.var(axis=1).mean()
    if tau < resolution and half >= 4 and var > 0:
        pair_means = arr[:, : 2 * half].reshape(arr.shape[0], half, 2).mean(axis=2)
        tau_pairs, _ = _geyer_time(pair_means)
        tau = 2.0 * pair_means.var(axis=1).mean() * tau_pairs / var
    return float(max(tau, resolution))


def split_rhat(x) -> float:
    """Split R-hat (Gelman et al.): each chain cut in halves; ~1 when the chains agree."""
    arr = _as_chains(x)
    half = arr.shape[1] // 2
    if half < 2:
        raise InvalidParameterError("split R-hat needs at least 4 samples per chain")
    halves = np.concatenate([arr[:, :half], arr[:, half: 2 * half]], axis=0)
    n = halves.shape[1]
    within = halves.var(axis=1, ddof=1).mean()
    between = n * halves.mean(axis=1).var(ddof=1)
    if within == 0:
        return 1.0 if between == 0 else float("inf")
    var_plus = (n - 1) / n * within + between / n
    return float(math.sqrt(var_plus / within))


def effective_sample_size(x) -> float:
    """``n_chains * n_samples / tau``."""
    arr = _as_chains(x)
    return float(arr.size / integrated_time(arr))


@dataclass(frozen=True)
class Stats:
    """Mean of a correlated observable with its error, printed as ``mean ± err (tau=.., ess=..)``.

    Attributes
    ----------
    mean, error : float
        Error from the integrated autocorrelation time: ``sqrt(var tau / n)``.
    tau : float
        Integrated autocorrelation time (in samples).
    ess : float
        Effective sample size ``n / tau``.
    rhat : float
        Split R-hat over chains (``nan`` for one chain).
    n : int
        Number of samples (all chains).
    n_chains : int
        Number of chains.
    """

    mean: float
    error: float
    tau: float
    ess: float
    rhat: float
    n: int
    n_chains: int = 1

    @property
    def n_over_tau(self) -> float:
        """Samples per chain over ``tau``: below :data:`MIN_N_OVER_TAU` ``tau`` and the error are
        underestimated (at ``n / tau ~ 10`` the error is about half the true one)."""
        return self.n / self.n_chains / self.tau

    def problems(self) -> list[str]:
        """Reasons not to trust the error bar (empty when none): a run shorter than
        ``MIN_N_OVER_TAU`` autocorrelation times per chain, or split R-hat above :data:`MAX_RHAT`."""
        out = []
        if self.n_over_tau < MIN_N_OVER_TAU:
            out.append(f"n/tau = {self.n_over_tau:.3g} < {MIN_N_OVER_TAU}")
        if self.rhat > MAX_RHAT:  # nan (one chain) compares False
            out.append(f"R-hat = {self.rhat:.3g} > {MAX_RHAT}")
        return out

    def z_score(self, value: float) -> float:
        """``(mean - value) / error``."""
        return (self.mean - value) / self.error if self.error > 0 else (0.0 if self.mean == value else math.inf)

    def __str__(self) -> str:
        digits = max(1, -int(math.floor(math.log10(self.error))) + 1) if self.error > 0 else 6
        return (f"{self.mean:.{digits}f} ± {self.error:.{digits}f} "
                f"(tau={self.tau:.3g}, ess={self.ess:.4g}, rhat={self.rhat:.3f})")


def estimate(x) -> Stats:
    """Mean and autocorrelation-corrected error of a series (chains pooled)."""
    arr = _as_chains(x)
    tau = integrated_time(arr)
    var = arr.var(ddof=1) if arr.size > 1 else 0.0
    error = math.sqrt(var * tau / arr.size)
    rhat = split_rhat(arr) if arr.shape[0] > 1 and arr.shape[1] >= 4 else float("nan")
    return Stats(mean=float(arr.mean()), error=float(error), tau=tau, ess=arr.size / tau, rhat=rhat, n=arr.size,
                 n_chains=arr.shape[0])
