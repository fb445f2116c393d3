"""Error analysis of correlated samples: autocorrelation, blocking, R-hat, effective sample size.

Conventions: a series ``x`` of shape (n_samples,) or (n_chains, n_samples). The integrated
autocorrelation time is

.. math:: \\tau = 1 + 2 \\sum_{t=1}^{M} \\rho(t),

with ``rho`` the normalised autocorrelation function (averaged over chains, computed by FFT) and
Sokal's automatic window: the smallest ``M`` with ``M >= c tau(M)`` (``c = 5``). The error of the
mean of ``N`` samples in total is ``sqrt(var tau / N)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import fft as _fft

from ._util import as_int
from .errors import InvalidParameterError

__all__ = [
    "Stats",
    "autocorrelation",
    "integrated_time",
    "blocking_error",
    "split_rhat",
    "effective_sample_size",
    "estimate",
]


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


def integrated_time(x, c: float = 5.0) -> float:
    """Integrated autocorrelation time with Sokal's automatic windowing (``tau >= 1`` is not forced).

    Parameters
    ----------
    x : array_like of shape (n_samples,) or (n_chains, n_samples)
    c : float, default 5
        Window constant: the window ``M`` is the smallest with ``M >= c tau(M)``.
    """
    rho = autocorrelation(x)
    taus = 2.0 * np.cumsum(rho) - 1.0
    windows = np.arange(len(taus))
    ok = windows >= c * taus
    m = int(np.argmax(ok)) if ok.any() else len(taus) - 1
    return float(max(taus[m], 1e-12))


def blocking_error(x, min_blocks: int = 32) -> float:
    """Standard error of the mean by blocking (Flyvbjerg-Petersen), chains pooled.

    Consecutive samples are averaged in blocks of doubling size; the error of the largest block
    size that still leaves ``min_blocks`` blocks per chain is returned (the plateau for series
    much longer than the autocorrelation time).
    """
    arr = _as_chains(x)
    min_blocks = as_int(min_blocks, "min_blocks", minimum=2)
    best = 0.0
    size = 1
    while arr.shape[1] // size >= min_blocks:
        n_blocks = arr.shape[1] // size
        blocks = arr[:, : n_blocks * size].reshape(arr.shape[0], n_blocks, size).mean(axis=2).ravel()
        err = blocks.std(ddof=1) / math.sqrt(blocks.size)
        best = max(best, err)
        size *= 2
    return float(best)


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


def effective_sample_size(x, c: float = 5.0) -> float:
    """``n_chains * n_samples / tau``."""
    arr = _as_chains(x)
    return float(arr.size / integrated_time(arr, c))


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
    """

    mean: float
    error: float
    tau: float
    ess: float
    rhat: float
    n: int

    def z_score(self, value: float) -> float:
        """``(mean - value) / error``."""
        return (self.mean - value) / self.error if self.error > 0 else (0.0 if self.mean == value else math.inf)

    def __str__(self) -> str:
        digits = max(1, -int(math.floor(math.log10(self.error))) + 1) if self.error > 0 else 6
        return (f"{self.mean:.{digits}f} ± {self.error:.{digits}f} "
                f"(tau={self.tau:.3g}, ess={self.ess:.4g}, rhat={self.rhat:.3f})")


def estimate(x, c: float = 5.0) -> Stats:
    """Mean and autocorrelation-corrected error of a series (chains pooled)."""
    arr = _as_chains(x)
    tau = integrated_time(arr, c)
    var = arr.var(ddof=1) if arr.size > 1 else 0.0
    error = math.sqrt(var * max(tau, 1e-12) / arr.size)
    rhat = split_rhat(arr) if arr.shape[0] > 1 and arr.shape[1] >= 4 else float("nan")
    return Stats(mean=float(arr.mean()), error=float(error), tau=tau, ess=arr.size / tau, rhat=rhat, n=arr.size)
