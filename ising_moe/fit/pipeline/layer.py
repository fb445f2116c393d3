"""Fitted versus empirical correlations, layer by layer: the pipeline behind ``isingmoe fit``.

For every MoE layer of an expert-sequence file:

1. the top-1 expert sequence (capacity drops handled by ``dropped``) is split into training and
   test sequences (``test_fraction``, fixed seed);
2. every variant is fitted on the training sequences; its exact log-likelihood per token on the
   test sequences is compared with the independent-site baseline (paired over test sequences);
3. the empirical ``C(r)`` and ``xi`` (:mod:`ising_moe.measure`, all sequences) are set beside the
   exact ``C(r)`` of each fitted chain (transfer matrices, averaged over positions exactly as the
   empirical estimator is) and its correlation length, fitted on the same window; the main
   variant's ``xi`` gets a bootstrap over training sequences (warm-started refits);
4. residual correlations beyond the nearest-neighbour fit are reported in units of their errors;
5. a Monte Carlo check simulates the fitted main chain and compares its same-state overlaps with
   the exact ones.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from ..._util import as_int
from ...errors import ConvergenceWarning, InvalidParameterError, SparseDataWarning
from ...exact import solve
from ...executors import run_tasks
from ..baselines import ChainPseudoLikelihood
from ..data import ChainData
from ..max_likelihood import ChainMaxLikelihood, IndependentSites
from ..result import ChainFitResult, StandardErrors
from .indicators import IndicatorComparison

log = logging.getLogger(__name__)


#: name -> (fitter class, hyperparameters)
VARIANTS: dict[str, tuple[type, dict]] = {
    "independent": (IndependentSites, {}),
    "potts": (ChainMaxLikelihood, {"couplings": "potts"}),
    "full": (ChainMaxLikelihood, {"couplings": "full"}),
    "potts-bond": (ChainMaxLikelihood, {"couplings": "potts-bond"}),
    "full-bond": (ChainMaxLikelihood, {"couplings": "full-bond"}),
    "potts-homogeneous": (ChainMaxLikelihood, {"couplings": "potts", "fields": "homogeneous"}),
    "full-homogeneous": (ChainMaxLikelihood, {"couplings": "full", "fields": "homogeneous"}),
    "pseudo-likelihood": (ChainPseudoLikelihood, {"couplings": "full"}),
}
DEFAULT_VARIANTS = ("independent", "potts", "full", "potts-homogeneous")
#: the variant whose xi is bootstrapped and checked by Monte Carlo: the first one fitted
MAIN_PRIORITY = ("full", "potts", "full-bond", "potts-bond", "full-homogeneous", "potts-homogeneous")
#: above this many states the default variants leave out the full (q, q) coupling matrix: its
#: (q - 1)^2 parameters are poorly determined by a few hundred sequences (ask for it by name)
MAX_DEFAULT_FULL_STATES = 16
#: exact range-R fits when q^R is at most this, else pseudo-likelihood (which skips sites with a
#: hidden neighbour: on heavily masked data, e.g. Switch capacity drops, it is a poor estimate)
MAX_EXACT_WINDOW = 64


def variant_fitter(name: str, n_states: int, standard_errors: bool = False):
    """A fresh fitter for a variant name (``range<R>``: couplings up to distance R); with
    ``standard_errors``, an exact-likelihood variant provides its Fisher errors (on first access)."""
    if name.startswith("range"):
        try:
            r = int(name[5:])
        except ValueError:
            raise InvalidParameterError(f"range variants are named range<R>, got {name!r}") from None
        as_int(r, "range", minimum=2)
        if n_states**r <= MAX_EXACT_WINDOW:
            return ChainMaxLikelihood(couplings="full", max_range=r, standard_errors=False)
        return ChainPseudoLikelihood(couplings="full", max_range=r)
    if name == "mean-field":
        raise InvalidParameterError(
            "the mean-field variant is no longer fitted by the pipeline: naive mean-field couplings are not "
            "consistent in the number of sequences (ChainMeanField is a rough initialiser); use potts, full or "
            "pseudo-likelihood")
    if name not in VARIANTS:
        raise InvalidParameterError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)} or range<R>")
    cls, kwargs = VARIANTS[name]
    if cls is ChainMaxLikelihood:
        # errors only for the main variant (compare_layer asks for them): computed lazily, on access
        kwargs = {**kwargs, "standard_errors": standard_errors}
    return cls(**kwargs)


@dataclass(frozen=True, eq=False)
class LayerComparison:
    """Everything ``isingmoe fit`` reports for one layer.

    Attributes
    ----------
    fits : dict of str -> ChainFitResult
    heldout : dict of str -> float
        Test log-likelihood per token.
    gain, gain_error : dict of str -> float
        Test log-likelihood per token minus the independent-site baseline's, with its error
        (paired over test sequences).
    empirical, empirical_error : ndarray of shape (R + 1,)
        Empirical ``C(r)`` (all sequences).
    empirical_null : ndarray of shape (n_null, R + 1)
    xi_empirical : CorrelationLength
    fitted_correlation : dict of str -> ndarray of shape (R + 1,)
        Exact ``C(r)`` of each fitted chain.
    xi_fitted : dict of str -> float
        Correlation length of the fitted chains' ``C(r)`` on the empirical window: 0 for a model
        without couplings (by definition), NaN where it is not supported (see ``xi_fitted_note``).
    xi_fitted_note : dict of str -> str
        Why ``xi_fitted`` is 0 or NaN (empty when it is a fitted value).
    xi_spectral : dict of str -> float
        Bulk transfer-matrix ``xi`` of the fitted couplings with position-averaged fields (0 and
        NaN as ``xi_fitted``).
    main : str
        The variant whose xi is bootstrapped and checked by Monte Carlo.
    xi_fitted_error : float
        Bootstrap error of the main variant's ``xi_fitted``.
    residual_z : ndarray
        ``(C_emp(r) - C_main(r)) / se(r)`` for ``r = 1..``.
    mc_correlation, mc_overlap_z : ndarray or None
        Monte Carlo ``C(r)`` of the fitted main chain and z-scores of its overlaps against exact.
    decomposition : LayerDecomposition or None
        The nested table token / position / neighbours / topic (:mod:`.decomposition`), when the
        data have token ids.
    """

    layer: int
    n_states: int
    n_train: int
    n_test: int
    fits: dict
    heldout: dict
    gain: dict
    gain_error: dict
    empirical: np.ndarray
    empirical_error: np.ndarray
    empirical_null: np.ndarray
    xi_empirical: Any
    fitted_correlation: dict
    xi_fitted: dict
    xi_spectral: dict
    xi_fitted_error: float
    residual_z: np.ndarray
    mc_correlation: np.ndarray | None = None
    mc_overlap_z: np.ndarray | None = None
    hidden_fraction: float = 0.0
    bootstrap_xi: np.ndarray = field(default_factory=lambda: np.zeros(0))
    indicators: IndicatorComparison | None = None
    xi_fitted_note: dict = field(default_factory=dict)
    main: str = ""
    drops: Any = None
    decomposition: Any = None


def _fitted_xi(corr_model, window, sigma):
    """Exponential-fit ``xi`` of a model ``C(r)`` on the empirical window with empirical weights."""
    from ...measure import fit_exponential

    lo, hi = window
    r = np.arange(lo, hi + 1, dtype=float)
    c = corr_model[lo: hi + 1]
    keep = np.isfinite(c) & (c > 0)  # a short-ranged model can fall to zero inside the data's window
    if keep.sum() < 2:
        return math.nan
    return float(fit_exponential(r[keep], c[keep][None, :], np.maximum(sigma[lo: hi + 1][keep], 1e-12))[1][0])


def _xi_of_fit(result: ChainFitResult, corr_model, window, sigma) -> tuple[float, str]:
    """``xi`` of a fitted chain with the reason when it is not a fitted number.

    A chain without couplings has independent sites: ``xi = 0`` by definition (an exponential fit
    to its ``C(r)`` would fit rounding noise). A fit that failed or did not converge supports no
    ``xi``: NaN.
    """
    if result.error:
        return math.nan, "fit failed"
    if result.couplings_variant == "none":
        return 0.0, "no couplings: xi = 0 by definition"
    if not result.success:
        return math.nan, "fit did not converge"
    xi = _fitted_xi(corr_model, window, sigma)
    if not math.isfinite(xi):
        return math.nan, "fitted C(r) not positive on the window"
    return xi, ""


def _bulk_xi(result: ChainFitResult) -> float:
    """Spectral ``xi`` of the homogeneous chain with the fitted couplings and mean fields."""
    if result.couplings_variant == "none":
        return 0.0
    if result.max_range != 1 or result.couplings.shape[1] != 1:
        return math.nan
    from ...chain import PottsChain

    model = PottsChain(8, result.couplings[0, 0], result.fields.mean(axis=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(solve(model).correlation_length())


def _model_correlation(result: ChainFitResult, n_sites: int, max_distance: int) -> np.ndarray:
    if result.max_range > 1 or result.error:
        return np.full(max_distance + 1, np.nan)
    return solve(result.model(n_sites)).correlation_function(max_distance)


def _bootstrap_refit(variant, n_states, data, init, n_sites, max_distance, window, sigma):
    """One bootstrap refit (a picklable task): the refit's ``xi`` and parameters."""
    fitter = variant_fitter(variant, n_states)
    fitter.tol = 3e-6
    if hasattr(fitter, "bias_correction"):  # the spread is that of the corrected estimator to first order
        fitter.bias_correction = "none"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitter.fit(data, init=init)
    return _fitted_xi(_model_correlation(fitter.result_, n_sites, max_distance), window, sigma), fitter.result_.theta


def _main_errors(result: ChainFitResult, boot_theta, hidden_fraction: float) -> ChainFitResult:
    """The main variant's parameter errors, and which they are (in ``errors.message`` and the fit's message).

    Without hidden sites the inverse Fisher information (plus the prior precision) is the error of
    the exact likelihood, and it is used: a handful of bootstrap refits would give an error with
    ``B - 1`` degrees of freedom (6 refits: 95% intervals covering ~0.85 of the time) and near zero
    for cells never observed, whose error is the prior's. With hidden sites (capacity drops) the
    Fisher errors are the complete-data ones, too small: the larger of them and the refits' spread
    is stored, with the number of refits.
    """
    fisher = result.errors
    if fisher is not None and fisher.theta is None:
        fisher = None
    if fisher is not None and hidden_fraction == 0:
        note = "errors: inverse Fisher information plus prior precision (exact likelihood, no hidden sites)"
        errors = StandardErrors(result.parametrization(), theta=fisher.theta, fields=fisher.fields,
                                couplings=fisher.couplings, message=note)
    elif len(boot_theta) > 1:
        par = result.parametrization()
        expanded = [par.expand(t) for t in boot_theta]  # per-entry spread: all covariances included
        sd = [np.std(boot_theta, axis=0, ddof=1), np.std([e[0] for e in expanded], axis=0, ddof=1),
              np.std([e[1] for e in expanded], axis=0, ddof=1)]
        note = (f"errors: spread of {len(boot_theta)} bootstrap refits ({len(boot_theta) - 1} degrees of freedom: "
                f"a 95% interval is +- {stats.t.ppf(0.975, len(boot_theta) - 1):.2f} errors)")
        if fisher is not None:
            sd = [np.maximum(a, b) for a, b in zip(sd, (fisher.theta, fisher.fields, fisher.couplings))]
            note += (", or the Fisher errors where larger (with hidden sites they are the complete-data ones, "
                     "too small; for never-observed cells they are the prior's)")
        errors = StandardErrors(par, theta=sd[0], fields=sd[1], couplings=sd[2], message=note)
    elif fisher is not None:
        note = ("errors: inverse Fisher information plus prior precision (complete-data: too small with "
                f"{hidden_fraction:.1%} hidden sites; no bootstrap refits to check them)")
        errors = StandardErrors(result.parametrization(), theta=fisher.theta, fields=fisher.fields,
                                couplings=fisher.couplings, message=note)
    else:
        return dataclasses.replace(result, errors=None, message=result.message + "; no parameter errors")
    return dataclasses.replace(result, errors=errors, message=result.message + "; " + note)


def compare_layer(states, mask, lengths, n_states: int, layer: int, *, variants=DEFAULT_VARIANTS,
                  test_fraction: float = 0.2, max_distance: int = 64, n_bootstrap: int = 6, mc_sweeps: int = 2000,
                  seed: int = 0, executor=None, xi_seed: int | None = None) -> LayerComparison:
    """Fit every variant to one layer's sequences and compare with the empirical correlations.

    Parameters
    ----------
    states : ndarray of int, shape (n_sequences, n_positions)
    mask : ndarray of bool, shape (n_sequences, n_positions)
        Valid tokens (excluded tokens inside a sequence are hidden sites, summed over exactly).
    lengths : ndarray of int, shape (n_sequences,)
        Chain length of each sequence (its valid tokens, padding excluded).
    n_states : int
    layer : int
    variants : sequence of str
        Names from :data:`VARIANTS` or ``range<R>``; ``independent`` is always included. The main
        variant (bootstrap of xi, Monte Carlo check) is the first of :data:`MAIN_PRIORITY` fitted.
    test_fraction : float
        Share of sequences held out.
    max_distance : int
        Largest ``r`` compared.
    n_bootstrap : int
        Bootstrap refits of the main variant over training sequences (0: none): the error of its
        ``xi``, and of its parameters only where the Fisher errors are not valid (hidden sites; see
        :func:`_main_errors`, which says in the fit's message which errors are stored).
    mc_sweeps : int
        Heat-bath sweeps of the Monte Carlo check (0: none).
    seed : int
    executor : concurrent.futures.Executor, optional
        Where the bootstrap refits run (default: here, in order); the results do not depend on it.
    xi_seed : int, optional
        Seed of the empirical ``C(r)``'s nulls and ``xi`` bootstrap (default ``seed``); ``isingmoe fit``
        passes its ``--seed``, as ``isingmoe measure`` does, so both print the same ``xi``.
    """
    from ...mc import simulate
    from ...measure import empirical_correlations

    rng = np.random.default_rng(seed)
    n_seq, n = states.shape
    if not 0 < test_fraction < 1:
        raise InvalidParameterError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_test = max(1, int(round(test_fraction * n_seq)))
    if n_seq - n_test < 2:
        raise InvalidParameterError(f"{n_seq} sequences are too few to hold out {test_fraction:.0%}")
    order = rng.permutation(n_seq)
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    data = ChainData.from_arrays(states, mask, lengths, n_states)
    inside = np.arange(n)[None, :] < data.lengths[:, None]
    hidden_fraction = float((inside & ~data.observed).sum() / inside.sum())
    train_data, test_data = data.subset(train), data.subset(test)
    names = ["independent"] + [v for v in variants if v != "independent"]
    fits, heldout, per_seq = {}, {}, {}
    test_tokens = test_data.n_tokens
    planned_main = next((v for v in MAIN_PRIORITY if v in names), None)
    for name in names:
        fitter = variant_fitter(name, n_states, standard_errors=name == planned_main)
        try:
            with warnings.catch_warnings():  # both are reported in the summary (sparse cells, "n.c.")
                warnings.simplefilter("ignore", SparseDataWarning)
                warnings.simplefilter("ignore", ConvergenceWarning)
                fitter.fit(train_data)
        except Exception as exc:  # one failing variant is reported as failed, never aborts the others
            if name == "independent":
                raise
            log.warning("layer %s: variant %s failed: %s", layer, name, exc)
            fits[name] = ChainFitResult.failed(fitter, n, n_states, train_data.n_tokens, exc)
            heldout[name] = math.nan
            continue
        fits[name] = fitter.result_
        ll = fitter.log_likelihood(test_data.states, test_data.observed, test_data.lengths)
        per_seq[name] = ll
        heldout[name] = float(ll.sum() / test_tokens)
    gain, gain_error = {}, {}
    for name in names:
        if name not in per_seq:
            gain[name] = gain_error[name] = math.nan
            continue
        d = per_seq[name] - per_seq["independent"]
        gain[name] = float(d.sum() / test_tokens)
        gain_error[name] = float(math.sqrt(len(d)) * d.std(ddof=1) / test_tokens) if len(d) > 1 else math.nan
    # empirical side on all sequences
    max_distance = min(max_distance, n - 1)
    # the same code path, seed and resampling as `isingmoe measure` (same numbers for the same options)
    corr, xi_emp, _ = empirical_correlations(states, mask, n_states, max_distance, layer=layer,
                                             seed=seed if xi_seed is None else xi_seed)
    window = xi_emp.window if xi_emp.window[1] >= 2 else (1, min(max_distance, 8))
    fitted_corr, xi_fit, xi_spec, xi_note = {}, {}, {}, {}
    for name, res in fits.items():
        fitted_corr[name] = _model_correlation(res, n, max_distance)
        xi_fit[name], xi_note[name] = _xi_of_fit(res, fitted_corr[name], window, corr.errors)
        xi_spec[name] = _bulk_xi(res) if math.isfinite(xi_fit[name]) else xi_fit[name]
    main = next((v for v in MAIN_PRIORITY if v in fits and not fits[v].error), names[-1])
    boot, boot_theta = [], []
    main_ok = main in fits and not fits[main].error and fits[main].max_range == 1
    if n_bootstrap and main_ok:
        # refits are independent tasks (resampled rows drawn here, in order: same stream as one loop)
        draws = [rng.integers(0, len(train), size=len(train)) for _ in range(n_bootstrap)]
        tasks = [(main, n_states, train_data.subset(rows), fits[main].theta, n, max_distance, window, corr.errors)
                 for rows in draws]
        refits = dict(run_tasks(executor, _bootstrap_refit, tasks))
        boot = [refits[k][0] for k in range(n_bootstrap)]
        boot_theta = [refits[k][1] for k in range(n_bootstrap)]
    boot = np.array(boot)
    if main in fits and not fits[main].error:
        fits[main] = _main_errors(fits[main], boot_theta, hidden_fraction)
    xi_fit_error = float(np.nanstd(boot, ddof=1)) if np.isfinite(boot).sum() > 1 else math.nan
    residual = np.zeros(0)
    if main in fitted_corr and np.all(np.isfinite(fitted_corr[main])):
        residual = ((corr.values - fitted_corr[main]) / np.maximum(corr.errors, 1e-300))[1:]
    mc_corr = mc_z = None
    if mc_sweeps and main_ok:
        model = fits[main].model(n)
        run = simulate(model, "heat-bath", mc_sweeps, n_chains=4, n_burnin=min(200, mc_sweeps), rng=rng,
                       max_distance=max_distance)
        mc_corr = run.correlation_function()
        exact_overlap = solve(model).same_state_joint(max_distance).sum(axis=1)
        mc_z = np.array([run.stats(f"overlap:{r}").z_score(exact_overlap[r]) for r in range(1, max_distance + 1)])
    return LayerComparison(
        layer=layer, n_states=n_states, n_train=len(train), n_test=len(test), fits=fits, heldout=heldout,
        gain=gain, gain_error=gain_error, empirical=corr.values, empirical_error=corr.errors,
        empirical_null=corr.null, xi_empirical=xi_emp, fitted_correlation=fitted_corr, xi_fitted=xi_fit,
        xi_spectral=xi_spec, xi_fitted_note=xi_note, main=main, xi_fitted_error=xi_fit_error, residual_z=residual, mc_correlation=mc_corr,
        mc_overlap_z=mc_z, hidden_fraction=hidden_fraction, bootstrap_xi=boot)
