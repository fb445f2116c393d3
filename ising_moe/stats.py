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
from scipy.stats import chi2 as _chi2

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
    "MIN_CHAINS_P",
    "MIN_EVENTS",
    "chains_p_value",
]


#: a chain shorter than this many autocorrelation times gives too small errors
MIN_N_OVER_TAU = 50
#: split R-hat above this means the chains have not mixed
MAX_RHAT = 1.01
#: a between-chain test below this p-value means the chains disagree (see :func:`chains_p_value`)
MIN_CHAINS_P = 1e-3
#: a mean near a bound of its observable needs this many effective events (5 errors from the bound)
MIN_EVENTS = 25


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


def _tau_and_lags(arr: np.ndarray) -> tuple[float, int]:
    """:func:`integrated_time` and the number of lags its estimate summed."""
    tau, n_lags = _geyer_time(arr)
    resolution = math.sqrt(2.0 * n_lags / arr.size)
    half = arr.shape[1] // 2
    var = arr.var(axis=1).mean()
    if tau < resolution and half >= 4 and var > 0:
        pair_means = arr[:, : 2 * half].reshape(arr.shape[0], half, 2).mean(axis=2)
        tau_pairs, _ = _geyer_time(pair_means)
        tau = 2.0 * pair_means.var(axis=1).mean() * tau_pairs / var
    return float(max(tau, resolution)), n_lags


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
    return _tau_and_lags(_as_chains(x))[0]


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


def chains_p_value(x, tau: float | None = None) -> float:
    """p-value of the hypothesis that every chain samples the same mean (between-chain test).

    The per-chain means ``m_c`` of ``n`` samples each have, under that hypothesis, variance
    ``W tau / n`` (``W`` the mean within-chain variance, ``tau`` the pooled integrated time), so

    .. math:: \\chi^2 = \\frac{n}{W \\tau} \\sum_c (m_c - \\bar m)^2 \\sim \\chi^2_{C - 1}.

    Unlike split R-hat this scales with the autocorrelation: chains stuck in different modes, or a
    ``tau`` too short for the slowest fluctuation, give a tiny p at any run length.

    Returns
    -------
    float
        ``nan`` for one chain or no variation at all; ``0`` when the chains are constant at different values.
    """
    arr = _as_chains(x)
    n_chains, n = arr.shape
    if n_chains < 2:
        return float("nan")
    means = arr.mean(axis=1)
    within = arr.var(axis=1, ddof=1).mean()
    spread = float(((means - means.mean()) ** 2).sum())
    if within <= 0:
        return float("nan") if spread == 0 else 0.0
    tau = _tau_and_lags(arr)[0] if tau is None else tau
    return float(_chi2.sf(n * spread / (within * tau), n_chains - 1))


@dataclass(frozen=True)
class Stats:
    """Mean of a correlated observable with its error, printed as ``mean ± err (tau=.., ess=..)``.

    Attributes
    ----------
    mean, error : float
        Error from the integrated autocorrelation time: ``sqrt(var tau / n)``; ``nan`` when the
        series never varied (no error is estimable: see ``limit``).
    tau : float
        Integrated autocorrelation time (in samples); ``nan`` when the series never varied.
    ess : float
        Effective sample size ``n / tau``.
    rhat : float
        Split R-hat over chains (``nan`` for one chain).
    n : int
        Number of samples (all chains).
    n_chains : int
        Number of chains.
    tau_upper : float
        ``tau`` plus twice the statistical error of its estimate (Sokal:
        ``sd(tau) / tau ~ sqrt(2 (2 L + 1) / N)`` for ``L`` lags summed): the ``n / tau`` flag uses
        it, since ``tau`` itself is underestimated as often as not on short series.
    chains_p : float
        p-value of the between-chain test (:func:`chains_p_value`); ``nan`` for one chain.
    events : float
        For an observable with bounds: ``(d / error)**2`` with ``d`` the distance of the mean from
        the nearer bound, the effective number of independent events behind a mean near a bound
        (a rare state's occupation: the number of visits). ``nan`` without bounds.
    limit : float
        When the series never varied and sits at a bound: the one-sided 95% limit on the mean by
        the rule of three (an event never seen in ``n_eff`` independent samples has probability
        ``< 3 / n_eff``), e.g. ``mean = 0, limit = 0.0012``: the mean is below 0.0012. ``nan`` otherwise.
    notes : tuple of str
        Further reasons not to trust the error bar, supplied by the caller (e.g. the run's modes).
    """

    mean: float
    error: float
    tau: float
    ess: float
    rhat: float
    n: int
    n_chains: int = 1
    tau_upper: float = float("nan")
    chains_p: float = float("nan")
    events: float = float("nan")
    limit: float = float("nan")
    notes: tuple[str, ...] = ()

    @property
    def varied(self) -> bool:
        """Whether the series varied at all (otherwise it carries no error estimate)."""
        return bool(np.isfinite(self.error))

    @property
    def n_over_tau(self) -> float:
        """Samples per chain over ``tau``: below :data:`MIN_N_OVER_TAU` ``tau`` and the error are
        underestimated (at ``n / tau ~ 10`` the error is about half the true one)."""
        return self.n / self.n_chains / self.tau

    def problems(self) -> list[str]:
        """Reasons not to trust the error bar (empty when none), each flag with its rule:

        - no variation: the error is not estimable (``limit`` bounds the mean where it can);
        - ``n / tau_upper <`` :data:`MIN_N_OVER_TAU` samples per chain (``tau_upper``: ``tau`` with
          its estimation error, which catches series whose ``tau`` is underestimated);
        - split R-hat above :data:`MAX_RHAT`;
        - the between-chain test rejects at ``p <`` :data:`MIN_CHAINS_P`;
        - fewer than :data:`MIN_EVENTS` effective events behind a mean near a bound of the
          observable (the mean is within ``sqrt(MIN_EVENTS)`` errors of the bound: the error is
          then Poisson-like and skewed, and a few excursions decide the value);
        - the caller's ``notes``.
        """
        if not self.varied:
            what = self._bound_word()
            return ["no variation: error not estimable" + (f" ({what})" if what else ""), *self.notes]
        out = []
        n_over = self.n / self.n_chains / self.tau_upper if np.isfinite(self.tau_upper) else self.n_over_tau
        if n_over < MIN_N_OVER_TAU:
            out.append(f"n/tau = {n_over:.3g} < {MIN_N_OVER_TAU} (tau up to {self.tau_upper:.3g})")
        if self.rhat > MAX_RHAT:  # nan (one chain) compares False
            out.append(f"R-hat = {self.rhat:.3g} > {MAX_RHAT}")
        if self.chains_p < MIN_CHAINS_P:
            out.append(f"chains disagree (between-chain p = {self.chains_p:.2g})")
        if self.events < MIN_EVENTS:
            out.append(f"few events: about {self.events:.3g} (< {MIN_EVENTS}) behind a mean near its bound")
        return out + list(self.notes)

    def _bound_word(self) -> str | None:
        """How a series that never left a bound is described: an event never seen (0), always
        seen (1), or another bound."""
        if not np.isfinite(self.limit):
            return None
        if self.mean == 0 and self.limit > 0:
            return "never seen"
        return "always" if self.mean == 1 and self.limit < 1 else "at its bound"

    def z_score(self, value: float) -> float:
        """``(mean - value) / error``; ``nan`` when the series never varied (no error)."""
        if not self.varied or self.error <= 0:
            return float("nan")
        return (self.mean - value) / self.error

    def value_text(self, digits: int | None = None) -> str:
        """``mean ± error``; for a series that never varied ``< limit (never seen)``,
        ``> limit (always)`` or ``mean (no variation)``: never a zero error."""
        if not self.varied:
            if np.isfinite(self.limit):
                lim = _round_away(self.limit, self.mean)
                return f"{'<' if self.limit > self.mean else '>'} {lim} ({self._bound_word()})"
            return f"{self.mean:.{digits or 6}g} (no variation)"
        if digits is None:
            digits = max(1, -int(math.floor(math.log10(self.error))) + 1) if self.error > 0 else 6
        return f"{self.mean:.{digits}f} ± {self.error:.{digits}f}"

    def __str__(self) -> str:
        rhat = "n/a" if not np.isfinite(self.rhat) else f"{self.rhat:.3f}"
        if not self.varied:
            return f"{self.value_text()} (n={self.n}, rhat={rhat})"
        return f"{self.value_text()} (tau={self.tau:.3g}, ess={self.ess:.4g}, rhat={rhat})"


def _round_away(limit: float, mean: float) -> str:
    """Two significant digits of the distance from ``mean``, rounded so the limit only widens."""
    gap = abs(limit - mean)
    step = 10.0 ** (math.floor(math.log10(gap)) - 1)
    gap = math.ceil(gap / step) * step
    value = mean + gap if limit > mean else mean - gap
    decimals = max(0, -int(math.floor(math.log10(step))))
    return f"{value:.{decimals}f}"


def estimate(x, *, bounds: tuple[float, float] | None = None, tau_constant: float | None = None,
             notes: tuple[str, ...] = ()) -> Stats:
    """Mean and autocorrelation-corrected error of a series (chains pooled), with its diagnostics.

    Parameters
    ----------
    x : array_like of shape (n_samples,) or (n_chains, n_samples)
    bounds : (float, float), optional
        The values the observable cannot leave (an occupation: ``(0, 1)``). They give
        :attr:`Stats.events` and, for a series that never varied at a bound, :attr:`Stats.limit`.
    tau_constant : float, optional
        The ``tau`` to assume for a series that never varied (e.g. the largest ``tau`` of the same
        run's other observables), for the rule of three ``limit = 3 tau / n`` (times the range).
        Without it each chain counts as one independent sample.
    notes : tuple of str
        Caller's reasons not to trust the error, stored in :attr:`Stats.notes`.
    """
    arr = _as_chains(x)
    n_chains = arr.shape[0]
    mean = float(arr.mean())
    rhat = split_rhat(arr) if n_chains > 1 and arr.shape[1] >= 4 else float("nan")
    if np.ptp(arr) == 0:
        limit = float("nan")
        if bounds is not None and mean in bounds:
            # tau below 1 (anticorrelated) must not count more independent samples than there are
            n_eff = arr.size / max(1.0, tau_constant) if tau_constant and np.isfinite(tau_constant) else n_chains
            step = min(1.0, 3.0 / n_eff) * (bounds[1] - bounds[0])
            limit = mean + step if mean == bounds[0] else mean - step
        return Stats(mean=mean, error=float("nan"), tau=float("nan"), ess=float("nan"), rhat=float("nan"),
                     n=arr.size, n_chains=n_chains, limit=limit, notes=tuple(notes))
    tau, n_lags = _tau_and_lags(arr)
    tau_upper = tau * (1.0 + 2.0 * math.sqrt(2.0 * (2 * n_lags + 1) / arr.size))
    error = math.sqrt(arr.var(ddof=1) * tau / arr.size)
    events = float("nan")
    if bounds is not None and error > 0:
        events = (min(mean - bounds[0], bounds[1] - mean) / error) ** 2
    return Stats(mean=mean, error=float(error), tau=tau, ess=arr.size / tau, rhat=rhat, n=arr.size,
                 n_chains=n_chains, tau_upper=tau_upper, chains_p=chains_p_value(arr, tau), events=events,
                 notes=tuple(notes))
