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

from .._util import as_int
from ..errors import InvalidParameterError, SparseDataWarning
from ..exact import solve
from .fitters import (
    ChainData,
    ChainFitResult,
    ChainMaxLikelihood,
    ChainMeanField,
    ChainPseudoLikelihood,
    IndependentSites,
)

log = logging.getLogger(__name__)

__all__ = ["VARIANTS", "DEFAULT_VARIANTS", "MAIN_PRIORITY", "LayerComparison", "FitReport", "compare_layer",
           "fit_expert_data"]

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
    "mean-field": (ChainMeanField, {"couplings": "full"}),
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


def variant_fitter(name: str, n_states: int):
    """A fresh fitter for a variant name (``range<R>``: couplings up to distance R)."""
    if name.startswith("range"):
        try:
            r = int(name[5:])
        except ValueError:
            raise InvalidParameterError(f"range variants are named range<R>, got {name!r}") from None
        as_int(r, "range", minimum=2)
        if n_states**r <= MAX_EXACT_WINDOW:
            return ChainMaxLikelihood(couplings="full", max_range=r, standard_errors=False)
        return ChainPseudoLikelihood(couplings="full", max_range=r)
    if name not in VARIANTS:
        raise InvalidParameterError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)} or range<R>")
    cls, kwargs = VARIANTS[name]
    if cls is ChainMaxLikelihood:
        # the pipeline's parameter errors come from its bootstrap refits (cheaper than the Fisher
        # information of thousands of parameters)
        kwargs = {**kwargs, "standard_errors": False}
    return cls(**kwargs)


@dataclass(frozen=True, eq=False)
class IndicatorComparison:
    """Top-k routing seen per expert: the indicator ``1[e in top-k]`` of every expert as a binary
    (Ising) chain with its own position-dependent fields and nearest-neighbour coupling.

    The top-1 Potts chain asks whether consecutive tokens keep the router's *first choice*; these
    chains ask, expert by expert, whether an expert that is active at one token tends to stay
    active at the next beyond its positional rate (``J_e > 0``: persistent, cache-friendly experts;
    ``J_e < 0``: alternating). Couplings are in Ising form, ``-J_e sigma_i sigma_{i+1}``.

    Attributes
    ----------
    experts : ndarray of shape (n_experts,)
    rate : ndarray
        Mean activation rate of each expert.
    coupling, coupling_error : ndarray
        ``J_e`` and its standard error (inverse Fisher information).
    gain, gain_error : ndarray
        Held-out log-likelihood gain per token of the chain over independent sites.
    empirical_c1, fitted_c1 : ndarray
        ``C_e(1)`` of the data and of the fitted chain.
    """

    experts: np.ndarray
    rate: np.ndarray
    coupling: np.ndarray
    coupling_error: np.ndarray
    gain: np.ndarray
    gain_error: np.ndarray
    empirical_c1: np.ndarray
    fitted_c1: np.ndarray


def compare_indicators(experts, mask, lengths, n_experts: int, *, test_fraction: float = 0.2,
                       seed: int = 0) -> IndicatorComparison:
    """Fit an Ising chain (position fields, homogeneous coupling) to every expert's indicator sequence.

    Parameters
    ----------
    experts : ndarray of int, shape (n_sequences, n_positions, top_k)
    mask : ndarray of bool, shape (n_sequences, n_positions)
    lengths : ndarray of int, shape (n_sequences,)
    """
    from ..measure import correlation_function

    rng = np.random.default_rng(seed)
    n_seq = experts.shape[0]
    n_test = max(1, int(round(test_fraction * n_seq)))
    order = rng.permutation(n_seq)
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    empirical = correlation_function(experts, mask, n_experts, 1, (), 0, rng).per_state[1]
    out = {k: np.full(n_experts, np.nan) for k in ("rate", "coupling", "coupling_error", "gain", "gain_error",
                                                  "fitted_c1")}
    for e in range(n_experts):
        x = (experts == e).any(axis=-1).astype(np.int64)
        out["rate"][e] = x[mask].mean()
        if out["rate"][e] in (0.0, 1.0):
            continue  # never (or always) active: nothing to fit
        data = ChainData.from_arrays(x, mask, lengths, 2)
        train_data, test_data = data.subset(train), data.subset(test)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            chain = ChainMaxLikelihood(couplings="potts").fit(train_data)
            base = IndependentSites().fit(train_data)
        res = chain.result_
        # Potts J (delta - 1/2) on two states is the Ising coupling J / 2
        out["coupling"][e] = res.theta[-1] / 2
        out["coupling_error"][e] = res.theta_stderr[-1] / 2 if res.theta_stderr is not None else np.nan
        d = (chain.log_likelihood(test_data.states, test_data.observed, test_data.lengths)
             - base.log_likelihood(test_data.states, test_data.observed, test_data.lengths))
        out["gain"][e] = d.sum() / test_data.n_tokens
        out["gain_error"][e] = math.sqrt(len(d)) * d.std(ddof=1) / test_data.n_tokens
        # the model's C_e(1) is the per-state correlation of state 1 of the fitted chain
        out["fitted_c1"][e] = solve(res.model()).correlation_function(1, per_state=True)[1, 1]
    return IndicatorComparison(experts=np.arange(n_experts), empirical_c1=empirical, **out)


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
        Correlation length of the fitted chains' ``C(r)`` on the empirical window.
    xi_spectral : dict of str -> float
        Bulk transfer-matrix ``xi`` of the fitted couplings with position-averaged fields.
    xi_fitted_error : float
        Bootstrap error of the main variant's ``xi_fitted``.
    residual_z : ndarray
        ``(C_emp(r) - C_main(r)) / se(r)`` for ``r = 1..``.
    mc_correlation, mc_overlap_z : ndarray or None
        Monte Carlo ``C(r)`` of the fitted main chain and z-scores of its overlaps against exact.
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


def _fitted_xi(corr_model, window, sigma):
    """Exponential-fit ``xi`` of a model ``C(r)`` on the empirical window with empirical weights."""
    from ..measure import fit_exponential

    lo, hi = window
    r = np.arange(lo, hi + 1, dtype=float)
    c = corr_model[lo: hi + 1]
    keep = np.isfinite(c) & (c > 0)  # a short-ranged model can fall to zero inside the data's window
    if keep.sum() < 2:
        return math.nan
    return float(fit_exponential(r[keep], c[keep][None, :], np.maximum(sigma[lo: hi + 1][keep], 1e-12))[1][0])


def _bulk_xi(result: ChainFitResult) -> float:
    """Spectral ``xi`` of the homogeneous chain with the fitted couplings and mean fields."""
    if result.max_range != 1 or result.couplings.shape[1] != 1:
        return math.nan
    from ..chain import PottsChain

    model = PottsChain(8, result.couplings[0, 0], result.fields.mean(axis=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(solve(model).correlation_length())


def _model_correlation(result: ChainFitResult, n_sites: int, max_distance: int) -> np.ndarray:
    model = result.model(n_sites)
    if result.max_range > 1:
        return np.full(max_distance + 1, np.nan)
    return solve(model).correlation_function(max_distance)


def compare_layer(states, mask, lengths, n_states: int, layer: int, *, variants=DEFAULT_VARIANTS,
                  test_fraction: float = 0.2, max_distance: int = 32, n_bootstrap: int = 6, mc_sweeps: int = 2000,
                  seed: int = 0) -> LayerComparison:
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
        Bootstrap refits of the main variant over training sequences (0: none).
    mc_sweeps : int
        Heat-bath sweeps of the Monte Carlo check (0: none).
    seed : int
    """
    from ..mc import simulate
    from ..measure import correlation_function, fit_correlation_length

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
    for name in names:
        fitter = variant_fitter(name, n_states)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SparseDataWarning)
            fitter.fit(train_data)
        fits[name] = fitter.result_
        ll = fitter.log_likelihood(test_data.states, test_data.observed, test_data.lengths)
        per_seq[name] = ll
        heldout[name] = float(ll.sum() / test_tokens)
    gain, gain_error = {}, {}
    for name in names:
        d = per_seq[name] - per_seq["independent"]
        gain[name] = float(d.sum() / test_tokens)
        gain_error[name] = float(math.sqrt(len(d)) * d.std(ddof=1) / test_tokens) if len(d) > 1 else math.nan
    # empirical side on all sequences
    max_distance = min(max_distance, n - 1)
    corr = correlation_function(states, mask, n_states, max_distance, (), 4, rng)
    xi_emp = fit_correlation_length(corr.distances, corr.values, corr.errors, influence=corr.influence, rng=rng)
    window = xi_emp.window if xi_emp.window[1] >= 2 else (1, min(max_distance, 8))
    fitted_corr, xi_fit, xi_spec = {}, {}, {}
    for name, res in fits.items():
        fitted_corr[name] = _model_correlation(res, n, max_distance)
        xi_fit[name] = _fitted_xi(fitted_corr[name], window, corr.errors)
        xi_spec[name] = _bulk_xi(res)
    main = next((v for v in MAIN_PRIORITY if v in fits), names[-1])
    boot, boot_theta = [], []
    if n_bootstrap and main in fits and fits[main].max_range == 1:
        for _ in range(n_bootstrap):
            rows = rng.integers(0, len(train), size=len(train))
            fitter = variant_fitter(main, n_states)
            fitter.tol = 3e-6
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fitter.fit(train_data.subset(rows), init=fits[main].theta)
            boot.append(_fitted_xi(_model_correlation(fitter.result_, n, max_distance), window, corr.errors))
            boot_theta.append(fitter.result_.theta)
    boot = np.array(boot)
    if len(boot_theta) > 1:  # parameter errors of the main variant from the same refits
        stderr = np.std(boot_theta, axis=0, ddof=1)
        f_err, c_err = fits[main].parametrization().expand_stderr(stderr)
        message = fits[main].message + f"; errors from {len(boot_theta)} bootstrap refits"
        fits[main] = dataclasses.replace(fits[main], theta_stderr=stderr, fields_stderr=f_err,
                                         couplings_stderr=c_err, message=message)
    xi_fit_error = float(np.nanstd(boot, ddof=1)) if np.isfinite(boot).sum() > 1 else math.nan
    residual = np.zeros(0)
    if main in fitted_corr and np.all(np.isfinite(fitted_corr[main])):
        residual = ((corr.values - fitted_corr[main]) / np.maximum(corr.errors, 1e-300))[1:]
    mc_corr = mc_z = None
    if mc_sweeps and main in fits and fits[main].max_range == 1:
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
        xi_spectral=xi_spec, xi_fitted_error=xi_fit_error, residual_z=residual, mc_correlation=mc_corr,
        mc_overlap_z=mc_z, hidden_fraction=hidden_fraction, bootstrap_xi=boot)


@dataclass(frozen=True, eq=False)
class FitReport:
    """Result of :func:`fit_expert_data`: per-layer comparisons and provenance."""

    layers: list
    params: dict
    source: dict
    note: str | None


def _layer_job(args):
    states, mask, lengths, n_states, layer, kwargs, threads, topk = args
    if threads:
        import numba

        numba.set_num_threads(threads)
    result = compare_layer(states, mask, lengths, n_states, layer, **kwargs)
    if topk is not None:
        experts, topk_mask, n_experts = topk
        indicators = compare_indicators(experts, topk_mask, lengths, n_experts,
                                        test_fraction=kwargs["test_fraction"], seed=kwargs["seed"])
        result = dataclasses.replace(result, indicators=indicators)
    return result


def default_variants(n_states: int) -> list[str]:
    """The variants fitted when none are named: :data:`DEFAULT_VARIANTS`, without ``full`` above
    :data:`MAX_DEFAULT_FULL_STATES` states."""
    return [v for v in DEFAULT_VARIANTS if v != "full" or n_states <= MAX_DEFAULT_FULL_STATES]


def fit_expert_data(data, *, layers=None, variants=None, max_range: int = 1, test_fraction: float = 0.2,
                    max_distance: int = 32, n_bootstrap: int = 6, mc_sweeps: int = 2000, dropped: str = "exclude",
                    indicators: bool = True, seed: int = 0, processes: int = 1, progress: bool = False) -> FitReport:
    """Run :func:`compare_layer` on every layer of an :class:`~ising_moe.data.ExpertSequences`.

    ``variants`` defaults to :func:`default_variants`; ``max_range >= 2`` adds the variants
    ``range2 .. range<max_range>``. For top-k routing
    (``top_k > 1``) the top-1 expert is the Potts chain and, with ``indicators``, every expert's
    indicator is also fitted as an Ising chain (:func:`compare_indicators`). Layers run in
    ``processes`` worker processes (each layer's seed is spawned from ``seed``, so results do not
    depend on it).
    """
    from tqdm.auto import tqdm

    layer_ids = list(data.layers) if layers is None else [int(x) for x in layers]
    for layer in layer_ids:
        data.layer_index(layer)
    max_range = as_int(max_range, "max_range", 1, 4)
    n_bootstrap = as_int(n_bootstrap, "n_bootstrap", minimum=0)
    mc_sweeps = as_int(mc_sweeps, "mc_sweeps", minimum=0)
    processes = as_int(processes, "processes", minimum=1)
    variants = default_variants(data.n_experts) if variants is None else list(variants)
    variants = list(dict.fromkeys(variants + [f"range{r}" for r in range(2, max_range + 1)]))
    for name in variants:
        variant_fitter(name, 2)  # validates the names before any work
    seeds = np.random.SeedSequence(seed).spawn(len(layer_ids))
    kwargs = {"variants": variants, "test_fraction": test_fraction, "max_distance": max_distance,
              "n_bootstrap": n_bootstrap, "mc_sweeps": mc_sweeps}
    jobs = []
    for layer, ss in zip(layer_ids, seeds):
        x, m, q = data.states(layer, dropped=dropped)
        # chain length: the sequence's tokens (padding excluded); dropped tokens inside are hidden sites
        lengths = data.mask.shape[1] - np.argmax(data.mask[:, ::-1], axis=1)
        keep = m.any(axis=1) & (lengths >= 2)
        job_kwargs = {**kwargs, "seed": int(ss.generate_state(1)[0])}
        topk = None
        if data.top_k > 1 and indicators:
            li = data.layer_index(layer)
            topk_mask = data.mask if data.dropped is None else data.mask & ~data.dropped[:, li]
            topk = (data.experts[keep, li].astype(np.int64), topk_mask[keep], data.n_experts)
        jobs.append((x[keep], m[keep], lengths[keep], q, layer, job_kwargs, 1 if processes > 1 else 0, topk))
    results = []
    if processes > 1 and len(jobs) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(processes, len(jobs)), mp_context=context) as pool:
            for res in tqdm(pool.map(_layer_job, jobs), total=len(jobs), desc="fit", unit="layer",
                            disable=not progress or None):
                results.append(res)
    else:
        for job in tqdm(jobs, desc="fit", unit="layer", disable=not progress or None):
            results.append(_layer_job(job))
    params = {"layers": layer_ids, "variants": variants, "max_range": max_range, "test_fraction": test_fraction,
              "max_distance": max_distance, "n_bootstrap": n_bootstrap, "mc_sweeps": mc_sweeps,
              "dropped": dropped, "indicators": indicators and data.top_k > 1, "seed": seed,
              "main_variant": next((v for v in MAIN_PRIORITY if v in variants), variants[-1])}
    source = {"model_id": data.model_id, "weights": data.weights,
              "path": None if data.path is None else str(data.path)}
    return FitReport(results, params, source, data.provenance_note)


def write_fit_report(report: FitReport, path, *, overwrite: bool = False, input_sha256: str = "") -> None:
    """Write a :class:`FitReport` to HDF5 (kind ``"fit"``): a group ``layer_<L>`` per layer with the
    empirical correlations and a subgroup per variant (parameters, errors, held-out scores)."""
    from ..io import atomic_h5, write_array

    attrs = {"model_id": report.source.get("model_id", "unknown"), "weights": report.source.get("weights", "unknown"),
             "input_path": str(report.source.get("path") or ""), "input_sha256": input_sha256,
             "note": report.note or ""}
    with atomic_h5(path, kind="fit", params=report.params, seed=report.params.get("seed"), overwrite=overwrite,
                   attrs=attrs) as f:
        for lc in report.layers:
            g = f.create_group(f"layer_{lc.layer}")
            for key in ("layer", "n_states", "n_train", "n_test", "hidden_fraction", "xi_fitted_error"):
                g.attrs[key] = getattr(lc, key)
            xi = lc.xi_empirical
            g.attrs["xi_empirical"] = xi.xi
            g.attrs["xi_empirical_error"] = xi.error
            g.attrs["xi_window"] = np.array(xi.window)
            g.attrs["xi_message"] = xi.message
            write_array(g, "empirical_correlation", lc.empirical, ("distance",))
            write_array(g, "empirical_correlation_error", lc.empirical_error, ("distance",))
            write_array(g, "empirical_null", lc.empirical_null, ("null", "distance"))
            write_array(g, "residual_z", lc.residual_z, ("distance_from_1",))
            write_array(g, "bootstrap_xi", lc.bootstrap_xi, ("bootstrap",))
            if lc.mc_correlation is not None:
                write_array(g, "mc_correlation", lc.mc_correlation, ("distance",))
                write_array(g, "mc_overlap_z", lc.mc_overlap_z, ("distance_from_1",))
            if lc.indicators is not None:
                ind = g.create_group("indicators")
                ind.attrs["description"] = "per-expert indicator chains (Ising couplings J_e)"
                for key in ("rate", "coupling", "coupling_error", "gain", "gain_error", "empirical_c1", "fitted_c1"):
                    write_array(ind, key, getattr(lc.indicators, key), ("expert",))
            for name, res in lc.fits.items():
                v = g.create_group(f"variant_{name}")
                for key in ("method", "fields_variant", "couplings_variant", "max_range", "success", "message",
                            "n_iter", "log_likelihood", "n_tokens", "n_parameters", "aic", "bic", "l2",
                            "sparse_cells"):
                    v.attrs[key] = getattr(res, key)
                v.attrs["heldout_ll_per_token"] = lc.heldout[name]
                v.attrs["heldout_gain"] = lc.gain[name]
                v.attrs["heldout_gain_error"] = lc.gain_error[name]
                v.attrs["xi_fitted"] = lc.xi_fitted[name]
                v.attrs["xi_spectral"] = lc.xi_spectral[name]
                write_array(v, "fields", res.fields, ("position", "state"))
                write_array(v, "couplings", res.couplings, ("range", "bond", "state", "state_right"))
                if res.fields_stderr is not None:
                    write_array(v, "fields_stderr", res.fields_stderr, ("position", "state"))
                    write_array(v, "couplings_stderr", res.couplings_stderr, ("range", "bond", "state", "state_right"))
                write_array(v, "fitted_correlation", lc.fitted_correlation[name], ("distance",))
