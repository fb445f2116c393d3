"""Correlation length xi from an empirical C(r): exponential fit, summed estimator, and their verdict.

The small-sample rules (``docs/conventions.md``, "Small samples"):

* the error of ``C(r)`` comes from the spread over sequences (influence functions, ``N - 1`` degrees
  of freedom); with fewer than :data:`MIN_SEQUENCES` sequences it is not used and nothing is called
  above noise;
* the "above noise" window starts at ``r = 1`` and extends while ``C(r) > t_{N-1}(1 - alpha) se(r)``,
  distance after distance (a fixed-sequence test: the probability of calling any distance above
  noise when there is no correlation is at most ``alpha`` = :data:`WINDOW_LEVEL`, however many
  distances are measured);
* a number is called ``xi`` only when it is a measurement: at least :data:`MIN_SEQUENCES_XI`
  sequences and :data:`MIN_WINDOW` distances, ``C(r)`` exponential on the window (Hotelling-corrected
  goodness of fit, and the same decay length on both halves of the window), the window ends before
  the largest distance measured, the fitted and summed estimators agree, and the bootstrap error is at
  most :data:`MAX_RELATIVE_ERROR` of the value. Otherwise ``xi`` is NaN and ``message`` says why.

The fit is weighted least squares with the diagonal errors (a weight matrix estimated from the same
data biases a generalised least-squares ``xi``); the covariance of ``C(r)`` over sequences is used
only in the goodness of fit, with the Hotelling correction for its estimation.
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
MAX_DISAGREEMENT_Z = 3.0
#: one-sided level of the window test (family-wise over all distances)
WINDOW_LEVEL = 0.05
#: fewest sequences whose spread over sequences is used as the error of C(r)
MIN_SEQUENCES = 4
#: fewest sequences for a correlation length (its covariance, bootstrap and goodness of fit)
MIN_SEQUENCES_XI = 20
#: fewest distances in the window for a correlation length
MIN_WINDOW = 4
#: largest bootstrap error / xi of a reported xi
MAX_RELATIVE_ERROR = 0.5
#: |z| of the difference of the decay lengths fitted on the two halves of the window above which
#: C(r) "is not one exponential"
MAX_SPLIT_Z = 3.5


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
        ``(1, r_hi)``: the distances above noise (:func:`noise_window`); ``(1, 0)``: none.
    xi_sum, xi_sum_error : float
        Summed estimator on the same window, corrected exactly for truncation (NaN unless ``success``).
    success : bool
        ``xi`` is supported by the data (see the module docstring).
    message : str
        How ``xi`` was obtained, or every reason why it is n/a.
    chi2, dof, p_value : float, int, float
        Goodness of fit of the exponential (generalised least squares with the covariance of ``C(r)``
        over sequences on at most ``(N - 1) / 3`` evenly spaced distances of the window; p-value from
        Hotelling's ``T^2``); NaN/0 when not computed.
    capped : bool
        The window reaches the largest distance allowed (``r_max``): ``C(r)`` is still above noise
        there, so a fitted decay length would depend on the cap.
    agreement_z : float
        ``(xi_fit - xi_sum) / sd`` with the paired bootstrap sd of the difference (NaN without influence).
    n_sequences : int
        Sequences behind the errors (0: errors given, not estimated).
    split_xi : tuple of float
        Decay lengths fitted on the first and second half of the window (NaN when not computed).
    split_z : float
        Their difference in bootstrap standard deviations.
    curvature_z, curvature_p_value : float
        One-sided test that the decay length grows along the window (``ln C(r)`` convex: a faster
        decay at the first distances on top of a slower one), see :func:`_curvature_test`; with
        ``p < MIN_P_VALUE`` the fitted number is an effective decay length over the window, neither
        decay, and ``xi`` is n/a. NaN when not computed.
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
    n_sequences: int = 0
    split_xi: tuple = (math.nan, math.nan)
    split_z: float = math.nan
    curvature_z: float = math.nan
    curvature_p_value: float = math.nan


def noise_threshold(n_sequences: int | None, level: float = WINDOW_LEVEL, n_effective: float | None = None) -> float:
    """Multiple of ``se(r)`` that ``C(r)`` must exceed to be above noise at one-sided ``level``.

    ``t_nu(1 - level)`` for an error estimated from the spread over ``N`` sequences, with
    ``nu = min(N, n_effective) - 1`` (``n_effective``: Kish's effective number of sequences of unequal
    lengths, see :class:`~ising_moe.measure.CorrelationEstimate`); the normal quantile for errors given
    as known (``n_sequences`` None or 0); ``inf`` below :data:`MIN_SEQUENCES` sequences.
    """
    if not n_sequences:
        return float(sps.norm.isf(level))
    if n_sequences < MIN_SEQUENCES:
        return math.inf
    nu = n_sequences - 1 if n_effective is None or not math.isfinite(n_effective) else \
        max(1.0, min(n_sequences, n_effective) - 1)
    return float(sps.t.isf(level, nu))


def noise_window(values, errors, r_max: int | None = None, n_sequences: int | None = None,
                 level: float = WINDOW_LEVEL, n_effective: float | None = None) -> tuple[int, int]:
    """``(1, r_hi)``: the distances ``1..r_hi`` at which ``C(r)`` is above noise (``(1, 0)``: none).

    A fixed-sequence test: ``r = 1, 2, ...`` in turn, each one-sided at ``level``
    (``C(r) > noise_threshold(N) se(r)``), stopping at the first distance in the noise. Testing in a
    fixed order and stopping at the first non-rejection keeps the probability of any false "above
    noise" at ``level`` however many distances there are (a run of ``C(r) > 2 se`` anywhere among 64
    distances is found by chance in most data sets).
    """
    values = np.asarray(values, dtype=float)
    errors = np.asarray(errors, dtype=float)
    top = len(values) - 1 if r_max is None else min(r_max, len(values) - 1)
    t = noise_threshold(n_sequences, level, n_effective)
    hi = 0
    for r in range(1, top + 1):
        ok = math.isfinite(values[r]) and math.isfinite(errors[r]) and errors[r] > 0 and values[r] > t * errors[r]
        if not ok:
            break
        hi = r
    return 1, hi


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


def _window_covariance(r, phi, n_seq):
    """At most ``(N - 1) / 3`` evenly spaced distances of the window and the covariance of ``C(r)`` there
    over sequences; ``None, None`` when too few distances or sequences, or the covariance is singular."""
    m = min(len(r), max(3, (n_seq - 1) // 3))
    if m < 3 or n_seq < MIN_SEQUENCES_XI:
        return None, None
    pick = np.unique(np.round(np.linspace(0, len(r) - 1, m)).astype(int))
    sub = phi[:, pick]
    covariance = sub.T @ sub / (n_seq * (n_seq - 1))
    eig = np.linalg.eigvalsh(covariance)
    if not (eig.min() > 1e-12 * eig.max() > 0):
        return None, None
    return pick, covariance


def _gof_hotelling(r, c, phi, sigma, n_seq):
    """Generalised least-squares ``chi2`` of the exponential on at most ``(N - 1) / 3`` evenly spaced
    distances of the window, with Hotelling's correction for the covariance estimated from the same
    ``N`` sequences: ``chi2 (nu - d + 1) / (nu d) ~ F(d, nu - d + 1)``, ``nu = N - 1``, ``d = m - 2``.

    Without the correction, an exponential fitted with a covariance of 140 distances estimated from
    500 sequences is called "not exponential" in most data sets. Returns ``chi2, dof, p``.
    """
    pick, covariance = _window_covariance(r, phi, n_seq)
    if pick is None:
        return math.nan, 0, math.nan
    chi2 = float(fit_exponential(r[pick], c[None, pick], sigma[pick], covariance=covariance)[2][0])
    d, nu = len(pick) - 2, n_seq - 1
    p_value = float(sps.f.sf(chi2 * (nu - d + 1) / (nu * d), d, nu - d + 1))
    return chi2, d, p_value


def _curvature_test(r, c, phi, sigma, n_seq):
    """One-sided test that the decay length of ``C(r)`` grows along the window (``ln C`` convex).

    A sum of exponentials with positive amplitudes (the overlap ``C(r)`` of a reversible chain) has
    a convex ``ln C(r)``: a faster decay adds to the first distances, and one exponential fitted over
    the window is an effective decay length, shorter than the slowest one. The test is the score
    test of the curvature ``kappa`` in ``A exp(-r / xi + kappa r^2)`` at ``kappa = 0``: the GLS
    residual of the exponential (covariance and distances as in :func:`_gof_hotelling`) projected
    on ``r^2 exp(-r / xi)`` after removing the directions of ``A`` and ``xi``,
    ``z = g W e / sqrt(g W g)``, shrunk by ``sqrt((nu - d + 1) / nu)`` for the covariance estimated
    from the same sequences and compared with ``t_{nu - d + 1}``. One direction (one degree of
    freedom) where the goodness of fit spreads over ``d``: on short windows, where the split test
    has too few distances, it sees a faster decay at the first distances that the goodness of fit
    misses. Returns ``z, p`` (NaN when not computed).
    """
    pick, covariance = _window_covariance(r, phi, n_seq)
    if pick is None or len(pick) < 3:
        return math.nan, math.nan
    rp, cp = r[pick], c[pick]
    weight = np.linalg.pinv(covariance, rcond=1e-10, hermitian=True)
    amp, xi, _ = (float(v[0]) for v in fit_exponential(rp, cp[None, :], sigma[pick], covariance=covariance))
    f = np.exp(-rp / xi)
    basis = np.stack([f, rp * f], axis=1)
    g = rp**2 * f
    g = g - basis @ np.linalg.lstsq(basis.T @ weight @ basis, basis.T @ weight @ g, rcond=None)[0]
    norm = float(g @ weight @ g)
    if not norm > 0:
        return math.nan, math.nan
    d, nu = len(pick) - 2, n_seq - 1
    z = float(g @ weight @ (cp - amp * f)) / math.sqrt(norm) * math.sqrt((nu - d + 1) / nu)
    return z, float(sps.t.sf(z, nu - d + 1))


def fit_correlation_length(distances, values, errors, *, influence=None, r_max: int | None = None,
                           n_bootstrap: int = 200, rng: RngLike = None, allow_capped: bool = False,
                           n_effective: float | None = None) -> CorrelationLength:
    """Fit ``C(r) = A exp(-r / xi)`` on the window above noise and decide whether ``xi`` is supported.

    Parameters
    ----------
    distances, values, errors : ndarray of shape (R + 1,)
        ``r = 0..R`` (index = distance); ``errors`` as from
        :func:`~ising_moe.measure.correlation_function` (spread over sequences, ``N - 1`` divisor).
    influence : ndarray of shape (n_sequences, R + 1), optional
        Centred influence functions. With them the window test uses ``t_{N-1}`` quantiles, errors
        come from weighted refits of bootstrap replicates ``C* = C + (w - 1) phi sqrt(N / (N - 1)) / N``
        (multinomial ``w`` over sequences), the two estimators' agreement and the single-exponential
        test use the same replicates, and the goodness of fit the covariance over sequences. Without
        them ``errors`` are taken as known (normal quantiles; curvature error; no agreement test).
    r_max : int, optional
        Largest distance allowed in the window (default ``R``).
    n_bootstrap : int
    rng : seed or Generator
        Of the bootstrap (pass the same seed for the same numbers: ``measure`` and ``fit`` do).
    allow_capped : bool, default False
        Keep ``xi`` when the window reaches ``r_max`` (the block estimator ``xi(b)``, whose window is
        limited by the block size by construction); ``capped`` still records it.
    n_effective : float, optional
        Effective number of sequences of unequal lengths (``CorrelationEstimate.n_effective``): the
        window test's degrees of freedom.

    Returns
    -------
    CorrelationLength
        ``success`` only under every rule of the module docstring.
    """
    values = np.asarray(values, dtype=float)
    errors = np.asarray(errors, dtype=float)
    r_max = len(values) - 1 if r_max is None else min(r_max, len(values) - 1)
    phi = None if influence is None else np.asarray(influence, dtype=float)
    n_seq = 0 if phi is None else phi.shape[0]
    nan = math.nan
    if phi is not None and n_seq < MIN_SEQUENCES:
        return CorrelationLength(nan, nan, nan, (1, 0), nan, nan, False,
                                 f"xi n/a: {n_seq} sequences are too few to tell C(r) from noise (the error of "
                                 f"C(r) comes from the spread over sequences: at least {MIN_SEQUENCES} needed)",
                                 n_sequences=n_seq)
    lo, hi = noise_window(values, errors, r_max, n_seq, n_effective=n_effective)
    length = hi - lo + 1
    if length < MIN_WINDOW:
        reason = ("no correlation above noise at r >= 1" if hi < lo else
                  f"C(r) above noise only on {lo} <= r <= {hi}: too few distances to test an exponential "
                  f"(at least {MIN_WINDOW})")
        return CorrelationLength(nan, nan, nan, (lo, hi), nan, nan, False, f"xi n/a: {reason}", n_sequences=n_seq,
                                 capped=bool(hi >= max(lo, r_max)))
    if phi is not None and n_seq < MIN_SEQUENCES_XI:  # the one reason that matters; the others would be noise
        return CorrelationLength(nan, nan, nan, (lo, hi), nan, nan, False,
                                 f"xi n/a: {n_seq} sequences are too few for a correlation length (its error, "
                                 f"goodness of fit and bootstrap come from the spread over sequences: at least "
                                 f"{MIN_SEQUENCES_XI} needed)", n_sequences=n_seq, capped=bool(hi >= r_max))
    r = np.arange(lo, hi + 1, dtype=float)
    c = values[lo: hi + 1]
    sigma = np.maximum(errors[lo: hi + 1], 1e-12 * np.abs(c).max())
    amp, xi = (float(v[0]) for v in fit_exponential(r, c[None, :], sigma)[:2])
    xi_sum = summed_xi(c)
    capped = hi >= r_max
    agreement_z = split_z = chi2 = p_value = curvature_z = curvature_p = nan
    split = (nan, nan)
    dof = 0
    reasons = []
    if phi is not None:
        phi = phi[:, lo: hi + 1]
        gen = as_generator(rng)
        w = _bootstrap_weights(n_seq, n_bootstrap, gen) - 1.0
        reps = c[None, :] + (w @ phi) * math.sqrt(n_seq / (n_seq - 1)) / n_seq
        xs = fit_exponential(r, reps, sigma)[1]
        sums = summed_xi(reps)
        error = float(np.std(xs, ddof=1))
        xi_sum_error = float(np.nanstd(sums, ddof=1)) if np.isfinite(sums).sum() > 1 else nan
        diff = xs - sums
        if np.isfinite(diff).sum() > 1 and math.isfinite(xi_sum):
            sd = float(np.nanstd(diff, ddof=1))
            agreement_z = (xi - xi_sum) / sd if sd > 0 else nan
        if length >= 2 * MIN_WINDOW:  # the same decay on both halves of the window
            half = length // 2
            a = fit_exponential(r[:half], np.vstack([c[:half], reps[:, :half]]), sigma[:half])[1]
            b = fit_exponential(r[half:], np.vstack([c[half:], reps[:, half:]]), sigma[half:])[1]
            split = (float(a[0]), float(b[0]))
            sd = float(np.std(np.log(a[1:]) - np.log(b[1:]), ddof=1))
            split_z = math.log(split[0] / split[1]) / sd if sd > 0 else nan
        chi2, dof, p_value = _gof_hotelling(r, c, phi, sigma, n_seq)
        curvature_z, curvature_p = _curvature_test(r, c, phi, sigma, n_seq)
        how = (f"WLS fit on {lo} <= r <= {hi}; errors from {n_bootstrap} bootstrap refits over {n_seq} sequences"
               + (f"; goodness of fit chi2/dof = {chi2:.1f}/{dof} (Hotelling p = {p_value:.2g})"
                  if math.isfinite(p_value) else ""))
    else:
        h = 1e-3 * xi  # curvature of the profiled chi2 in xi: var(xi) = 2 / chi2''
        chi = _exp_fit_profile_chi2(r, c, sigma, np.array([xi - h, xi, xi + h]))
        curvature = (chi[0] - 2 * chi[1] + chi[2]) / h**2
        error = float(math.sqrt(2.0 / curvature)) if curvature > 0 else nan
        xi_sum_error = nan
        chi2 = float(chi[1])
        dof = length - 2
        p_value = float(sps.chi2.sf(chi2, dof))
        how = f"WLS fit on {lo} <= r <= {hi} (errors given); error from the chi2 curvature; chi2/dof = {chi2:.1f}/{dof}"
    if not (_LOG_XI_GRID[1] < math.log(xi) < _LOG_XI_GRID[-2]):
        reasons.append("the fit ran to the edge of the search range [0.02, 1e5]")
    if math.isfinite(p_value) and p_value < MIN_P_VALUE:
        reasons.append(f"C(r) not exponential: chi2/dof = {chi2:.1f}/{dof} (p = {p_value:.2g})")
    if math.isfinite(split_z) and abs(split_z) > MAX_SPLIT_Z:
        mid = lo + length // 2
        reasons.append(f"C(r) is not one exponential: decay length {split[0]:.3g} on {lo} <= r <= {mid - 1} but "
                       f"{split[1]:.3g} on {mid} <= r <= {hi} (z = {split_z:.1f}); the single-exponential xi "
                       f"({xi:.3g}) would be neither")
    if math.isfinite(curvature_p) and curvature_p < MIN_P_VALUE and not (math.isfinite(split_z)
                                                                         and abs(split_z) > MAX_SPLIT_Z):
        half = length // 2
        head = fit_exponential(r[:half], c[None, :half], sigma[:half])[1][0]
        tail = fit_exponential(r[half:], c[None, half:], sigma[half:])[1][0]
        reasons.append(f"C(r) is not one exponential: ln C(r) bends upward along the window (curvature z = "
                       f"{curvature_z:.1f}, p = {curvature_p:.2g}; decay length {head:.3g} on {lo} <= r <= "
                       f"{lo + half - 1}, {tail:.3g} on {lo + half} <= r <= {hi}): a faster decay at small r on top "
                       f"of a slower one, so the single-exponential xi ({xi:.3g}) is an effective decay length over "
                       "the window, not the slowest decay")
    if capped and not allow_capped:
        reasons.append(f"window reaches the cap r = {r_max}: C(r) is still above noise there "
                       "(raise max_distance, or the correlations are not short-ranged)")
    if math.isfinite(agreement_z) and abs(agreement_z) > MAX_DISAGREEMENT_Z:
        reasons.append(f"fit ({xi:.3g}) and summed ({xi_sum:.3g}) estimators disagree (z = {agreement_z:.1f})")
    elif phi is not None and not math.isfinite(xi_sum):
        reasons.append("summed estimator undefined (C(r) does not decay over the window)")
    if not (math.isfinite(error) and error <= MAX_RELATIVE_ERROR * xi):
        reasons.append(f"xi = {xi:.3g} ± {error:.3g}: error above {MAX_RELATIVE_ERROR:.0%} of the value, not a "
                       "measurement")
    stats = dict(chi2=float(chi2), dof=int(dof), p_value=p_value, capped=bool(capped), agreement_z=float(agreement_z),
                 n_sequences=n_seq, split_xi=split, split_z=float(split_z), curvature_z=float(curvature_z),
                 curvature_p_value=float(curvature_p))
    if reasons:
        return CorrelationLength(nan, nan, nan, (lo, hi), nan, nan, False, "xi n/a: " + "; ".join(reasons), **stats)
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
