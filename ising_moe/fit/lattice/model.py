"""The conditional lattice fitter: routing of every layer given the tokens, with cross-layer couplings.

:class:`ConditionalLattice` fits the model of :mod:`ising_moe.fit.lattice.params` three ways, each
checked against the others in ``tests/fit/test_lattice.py``:

``"exact"``
    maximum (posterior) likelihood with the exact column transfer operator
    (:class:`~ising_moe.fit.lattice.exact.ExactLattice`; columns of at most
    :data:`~ising_moe.fit.lattice.exact.MAX_COLUMN_STATES` states), L-BFGS from the pseudo-likelihood
    fit; standard errors from the Fisher information ``sum_s Cov(phi | t_s)`` estimated with exact
    samples;
``"pseudo-likelihood"``
    every site given its neighbours (:mod:`~ising_moe.fit.lattice.pseudo_likelihood`): any size;
``"monte-carlo"``
    Monte Carlo learning (:func:`~ising_moe.fit.mc_learning.mc_learning`) from the pseudo-likelihood
    fit, one persistent chain per training sequence (conditioned on its tokens, started at its
    data), heat-bath or Metropolis sweeps (:mod:`ising_moe.mc.lattice`); standard errors from the
    Fisher information estimated on the chains.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..._util import as_generator, as_int
from ...errors import ConvergenceWarning, InvalidParameterError
from ..conditional.params import ConditionalData, TokenVocabulary
from .params import LatticeData, LatticeLayout
from .pseudo_likelihood import PseudoLikelihood, minimize_lbfgs, parameter_scale

__all__ = ["LATTICE_METHODS", "ConditionalLattice", "LatticeFitResult"]

LATTICE_METHODS = ("exact", "pseudo-likelihood", "monte-carlo")
#: largest number of parameters with a Fisher-information covariance (dense inverse)
MAX_COVARIANCE_PARAMS = 4000
#: largest column drawn exactly by default in :meth:`ConditionalLattice.sample` (above: the sampler is cheaper)
MAX_EXACT_DRAW_STATES = 1024


@dataclass(frozen=True, eq=False)
class LatticeFitResult:
    """Result of a lattice fit.

    Attributes
    ----------
    method : str
    success : bool
    message : str
    n_iter : int
    seconds : float
    n_params : int
    n_tokens : int
        Training positions (each with ``n_layers`` sites).
    log_likelihood : float
        Exact training log-likelihood (NaN where the column is too large), prior excluded.
    pseudo_log_likelihood : float
        Training log pseudo-likelihood at the fitted parameters.
    theta, theta_stderr : ndarray
        Fitted coordinates and their statistical standard errors (NaN where not computed).
    covariance : ndarray or None
        Their covariance (Fisher information inverse) where computed.
    mc_stderr : ndarray or None
        Monte Carlo error of ``theta`` (method ``"monte-carlo"``).
    token_fields : ndarray, shape (Λ, R, q)
    couplings : ndarray, shape (Λ, q, q)
    cross_couplings : ndarray, shape (P, q, q)
    pairs : ndarray, shape (P, 2)
    layout : dict
    """

    method: str
    success: bool
    message: str
    n_iter: int
    seconds: float
    n_params: int
    n_tokens: int
    log_likelihood: float
    pseudo_log_likelihood: float
    theta: np.ndarray = field(repr=False)
    theta_stderr: np.ndarray = field(repr=False)
    covariance: np.ndarray | None = field(repr=False)
    mc_stderr: np.ndarray | None = field(repr=False)
    token_fields: np.ndarray = field(repr=False)
    couplings: np.ndarray = field(repr=False)
    cross_couplings: np.ndarray = field(repr=False)
    pairs: np.ndarray = field(repr=False)
    layout: dict = field(repr=False)

    def coupling_strength(self) -> dict:
        """Frobenius norms (nats) of the zero-sum matrices: ``within`` (Λ,), ``cross`` (P,)."""
        return {"within": np.linalg.norm(self.couplings, axis=(1, 2)),
                "cross": np.linalg.norm(self.cross_couplings, axis=(1, 2))}


def fisher_from_samples(phi) -> np.ndarray:
    """``sum_s Cov(phi | t_s)`` from ``M >= 2`` draws per sequence, ``phi`` of shape (M, S, K)."""
    phi = np.asarray(phi, dtype=float)
    centred = phi - phi.mean(axis=0, keepdims=True)
    return np.einsum("msk,msj->kj", centred, centred) / (phi.shape[0] - 1)


def _covariance(fisher, l2):
    """Inverse of the negative log-posterior's Hessian ``F + l2 I`` (None if not positive definite)."""
    h = fisher + l2 * np.eye(fisher.shape[0])
    try:
        chol = np.linalg.cholesky(h)
    except np.linalg.LinAlgError:
        return None
    inv = np.linalg.inv(chol)
    return inv.T @ inv


class ConditionalLattice:
    """Layer x position lattice given the tokens (scikit-learn conventions: ``fit`` returns ``self``).

    Parameters
    ----------
    method : str, default "exact"
        One of :data:`LATTICE_METHODS` (see the module docstring).
    couplings : str, default "potts"
        Couplings along the text within each layer: ``"potts"``, ``"full"`` or ``"none"``.
    cross_range : int, default 1
        Cross-layer couplings between layers ``l < m <= l + cross_range`` (0: independent layers).
    token_rows : int, default 1000
        Token ids with their own field row per layer (the others pooled); 0: a homogeneous field per layer.
    l2 : float, default 1.0
        Prior precision of every coordinate of ``theta``. Stronger than the 1D chains' 0.1: expert
        pairs of two layers that never occur (near-deterministic routing) and rare token rows sit
        at large negative values under a weak prior, where Monte Carlo chains almost never visit
        them and learning cannot settle (measured on olmoe-tiny: it does with 1.0, not with 0.1).
    max_iter : int, default 500
        L-BFGS iterations (pseudo-likelihood and exact).
    tol : float, default 1e-6
        Largest scaled gradient component per site at convergence (L-BFGS).
    standard_errors : bool, default True
        Fisher-information standard errors (exact and Monte Carlo methods, at most
        :data:`MAX_COVARIANCE_PARAMS` parameters).
    n_fisher_samples : int, default 8
        Draws per training sequence for the Fisher information.
    update : str, default "heat-bath"
        Sampler of the Monte Carlo method (``"heat-bath"`` or ``"metropolis"``).
    mc_sweeps : int, default 1
        Sweeps per Monte Carlo learning iteration.
    mc_options : dict, optional
        Keyword arguments of :func:`~ising_moe.fit.mc_learning.mc_learning` (``step``, default 0.2
        here, ``window``, ``n_batches``, ``max_windows``, ``decay``, ``max_step``). The model moments
        are the Rao-Blackwellised ones of :meth:`LatticeLayout.conditional_moments`.
    random_state : int, default 0
        Seed of every stochastic step (samplers, Fisher draws).

    Attributes
    ----------
    token_fields_ : ndarray, shape (Λ, R, q)
    couplings_ : ndarray, shape (Λ, q, q)
    cross_couplings_ : ndarray, shape (P, q, q)
    pairs_ : ndarray, shape (P, 2)
    theta_ : ndarray
    layout_ : LatticeLayout
    vocabulary_ : TokenVocabulary or None
    result_ : LatticeFitResult
    """

    def __init__(self, method: str = "exact", couplings: str = "potts", cross_range: int = 1, token_rows: int = 1000,
                 l2: float = 1.0, max_iter: int = 500, tol: float = 1e-6, standard_errors: bool = True,
                 n_fisher_samples: int = 8, update: str = "heat-bath", mc_sweeps: int = 1, mc_options=None,
                 random_state: int = 0):
        self.method = method
        self.couplings = couplings
        self.cross_range = cross_range
        self.token_rows = token_rows
        self.l2 = l2
        self.max_iter = max_iter
        self.tol = tol
        self.standard_errors = standard_errors
        self.n_fisher_samples = n_fisher_samples
        self.update = update
        self.mc_sweeps = mc_sweeps
        self.mc_options = mc_options
        self.random_state = random_state

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in ("method", "couplings", "cross_range", "token_rows", "l2", "max_iter",
                                              "tol", "standard_errors", "n_fisher_samples", "update", "mc_sweeps",
                                              "mc_options", "random_state")}

    # ------------------------------------------------------------------ data
    def _data(self, states, tokens, lengths, n_states, vocab=None):
        x = np.asarray(states)
        if x.ndim != 3:
            raise InvalidParameterError(f"states must have shape (n_sequences, n_layers, n_positions), got {x.shape}")
        rows = None
        if tokens is not None or vocab is not None:
            if tokens is None:
                raise InvalidParameterError("this model has token fields: pass the sequences' tokens")
            cd = ConditionalData.from_arrays(x[:, 0], tokens, None, lengths, n_states)
            if vocab is None and self.token_rows:
                vocab = TokenVocabulary.build(cd, self.token_rows)
            if vocab is not None:
                rows = vocab.rows(cd.tokens)
        elif self.token_rows:
            raise InvalidParameterError("token fields need token ids: pass tokens= (or token_rows=0)")
        return LatticeData.from_arrays(x, rows, lengths, n_states), vocab

    # ------------------------------------------------------------------ fit
    def fit(self, states, tokens=None, lengths=None, *, n_states: int | None = None, init=None) -> ConditionalLattice:
        """Fit to lattices ``states`` (S, Λ, n) given their token ids (S, n); returns ``self``.

        ``init``: a fitted :class:`ConditionalLattice` (same training data and layout) or a ``theta``.
        """
        if self.method not in LATTICE_METHODS:
            raise InvalidParameterError(f"method must be one of {LATTICE_METHODS}, got {self.method!r}")
        if self.l2 < 0:
            raise InvalidParameterError(f"l2 must be >= 0, got {self.l2}")
        as_int(self.token_rows, "token_rows", minimum=0)
        t_start = time.perf_counter()
        data, vocab = self._data(states, tokens, lengths, n_states)
        n_rows = vocab.n_rows if vocab is not None else 1
        layout = LatticeLayout(data.n_layers, data.n_states, n_rows, self.couplings,
                               min(as_int(self.cross_range, "cross_range", minimum=0), data.n_layers - 1))
        if self.method == "exact":
            from .exact import ExactLattice

            ExactLattice.check_size(layout)
        stats = layout.statistics(data)
        pl = PseudoLikelihood(layout, data, self.l2)
        scale = parameter_scale(layout, data, self.l2)
        theta0 = np.zeros(layout.n_params)
        if init is not None:
            theta0 = np.asarray(getattr(init, "theta_", init), dtype=float)
            if theta0.shape != (layout.n_params,):
                raise InvalidParameterError(f"init has {theta0.size} parameters, this fit {layout.n_params}")
        theta, success, message, n_iter = minimize_lbfgs(pl, theta0, scale, self.max_iter, self.tol)
        cov = mc_err = None
        gen = as_generator(self.random_state)
        if self.method == "exact":
            theta, success, message, it2 = self._fit_exact(layout, data, stats, theta, scale)
            n_iter += it2
        elif self.method == "monte-carlo":
            theta, success, message, it2, mc_err, chains = self._fit_mc(layout, data, stats, theta, gen)
            n_iter += it2
        if self.standard_errors and self.method != "pseudo-likelihood" and layout.n_params <= MAX_COVARIANCE_PARAMS:
            if self.method == "exact":
                from .exact import ExactLattice

                ex = ExactLattice(layout, theta)
                draws = [layout.statistics_per_sequence(LatticeData(ex.sample(data.rows, data.lengths, gen), data.rows,
                                                                    data.lengths, data.n_states))
                         for _ in range(as_int(self.n_fisher_samples, "n_fisher_samples", minimum=2))]
            else:
                draws = self._chain_draws(layout, data, theta, chains)
            cov = _covariance(fisher_from_samples(np.stack(draws)), self.l2)
            if cov is None:
                message += "; Fisher information not positive definite: no standard errors"
        stderr = np.sqrt(np.clip(np.diag(cov), 0, None)) if cov is not None else np.full(layout.n_params, np.nan)
        ll = math.nan
        if self.method == "exact" or layout.n_states**layout.n_layers <= MAX_EXACT_DRAW_STATES:
            from .exact import ExactLattice

            ll = float(ExactLattice(layout, theta).log_likelihood(data).sum())
        p = layout.expand(theta)
        self.result_ = LatticeFitResult(
            method=self.method, success=bool(success), message=message, n_iter=int(n_iter),
            seconds=time.perf_counter() - t_start, n_params=layout.n_params, n_tokens=data.n_tokens,
            log_likelihood=ll, pseudo_log_likelihood=pl.log_pseudo_likelihood(theta, want_grad=False)[0],
            theta=theta, theta_stderr=stderr, covariance=cov, mc_stderr=mc_err, token_fields=p["token"],
            couplings=p["coupling"], cross_couplings=p["cross"], pairs=layout.pairs.copy(), layout=layout.describe())
        self.layout_, self.vocabulary_, self.theta_ = layout, vocab, theta
        self.token_fields_, self.couplings_, self.cross_couplings_ = p["token"], p["coupling"], p["cross"]
        self.pairs_ = layout.pairs.copy()
        self.n_states_, self.n_layers_ = layout.n_states, layout.n_layers
        if not success:
            warnings.warn(f"ConditionalLattice ({self.method}) did not converge: {message}", ConvergenceWarning,
                          stacklevel=2)
        return self

    def _fit_exact(self, layout, data, stats, theta0, scale):
        from .exact import ExactLattice

        n_sites = float(data.n_tokens * data.n_layers)

        def objective(theta):
            ll, grad = ExactLattice(layout, theta).log_likelihood_and_gradient(data, stats)
            return (-ll + 0.5 * self.l2 * theta @ theta) / n_sites, (-grad + self.l2 * theta) / n_sites

        return minimize_lbfgs(objective, theta0, scale, self.max_iter, self.tol)

    def _target(self, layout, data, theta):
        from ...mc.lattice import LatticeTarget

        p = layout.expand(theta)
        return LatticeTarget(p["token"], p["coupling"], p["cross"], layout.pairs, data.rows, data.lengths)

    def _fit_mc(self, layout, data, stats, theta0, gen):
        from ...mc.lattice import LatticeState, sweep
        from ..mc_learning import mc_learning

        n_seq = data.n_sequences
        sweeps = as_int(self.mc_sweeps, "mc_sweeps", minimum=1)
        target = self._target(layout, data, theta0)
        chains = LatticeState.initial(target, gen, start=data.states)

        def model_moments(theta, state):
            p = layout.expand(theta)
            sweep(target.with_parameters(p["token"], p["coupling"], p["cross"]), state, sweeps, self.update)
            return (*layout.conditional_moments(LatticeData(state.spins, data.rows, data.lengths, data.n_states), p),
                    state)

        options = dict(self.mc_options or {})
        options.setdefault("blocks", [sl for sl in layout.slices.values() if sl.stop > sl.start])
        # the conditional (Rao-Blackwellised) variance is close to the Fisher diagonal, so a step of
        # 0.5 is half a Newton step: its average sat up to 6 Monte Carlo errors from exact ML, 0.2 within 5
        options.setdefault("step", 0.2)
        res, chains = mc_learning(theta0, stats / n_seq, model_moments, chains, l2=self.l2 / n_seq, **options)
        self.mc_result_ = res
        return res.theta, res.success, res.message, res.n_iter, res.theta_stderr, chains

    def _chain_draws(self, layout, data, theta, chains, thin: int = 5):
        from ...mc.lattice import sweep

        target = self._target(layout, data, theta)
        draws = []
        for _ in range(as_int(self.n_fisher_samples, "n_fisher_samples", minimum=2)):
            sweep(target, chains, thin, self.update)
            draws.append(layout.statistics_per_sequence(LatticeData(chains.spins, data.rows, data.lengths,
                                                                    data.n_states)))
        return draws

    # ------------------------------------------------------------------ use
    def _check_fitted(self):
        if not hasattr(self, "result_"):
            raise InvalidParameterError("this ConditionalLattice is not fitted yet: call fit(states, tokens) first")

    def lattice_data(self, states, tokens=None, lengths=None) -> LatticeData:
        """Sequences in this model's token rows (held-out data)."""
        self._check_fitted()
        data, _ = self._data(states, tokens, lengths, self.n_states_, self.vocabulary_)
        self.layout_.check(data)
        return data

    def exact(self):
        """The fitted model's :class:`~ising_moe.fit.lattice.exact.ExactLattice` (small columns only)."""
        from .exact import ExactLattice

        self._check_fitted()
        return ExactLattice(self.layout_, self.theta_)

    def log_likelihood(self, states, tokens=None, lengths=None) -> np.ndarray:
        """Exact ``log P(x | t)`` of every sequence, shape (S,)."""
        return self.exact().log_likelihood(self.lattice_data(states, tokens, lengths))

    def score(self, states, tokens=None, lengths=None) -> float:
        """Mean exact log-likelihood per token position (all layers of a position together)."""
        data = self.lattice_data(states, tokens, lengths)
        return float(self.exact().log_likelihood(data).sum() / data.n_tokens)

    def sample(self, tokens=None, lengths=None, n_sites: int | None = None, rng=None, *, n_sweeps: int = 200,
               exact: bool | None = None):
        """One draw per sequence given its tokens. Returns states (S, Λ, n).

        ``exact`` (default: when the column has at most :data:`MAX_EXACT_DRAW_STATES` states):
        forward filtering, backward sampling; otherwise ``n_sweeps`` sweeps of the sampler from
        random states (its ``update``).
        """
        self._check_fitted()
        if tokens is None:
            if self.vocabulary_ is not None:
                raise InvalidParameterError("this model has token fields: pass the sequences' tokens")
            if n_sites is None or lengths is None:
                raise InvalidParameterError("without tokens pass lengths and n_sites")
            rows = np.zeros((len(lengths), n_sites), np.int64)
        else:
            tokens = np.asarray(tokens)
            rows = self.vocabulary_.rows(tokens) if self.vocabulary_ is not None else np.zeros(tokens.shape, np.int64)
        lengths = np.full(rows.shape[0], rows.shape[1], np.int64) if lengths is None else np.asarray(lengths, np.int64)
        if exact is None:
            exact = self.n_states_**self.n_layers_ <= MAX_EXACT_DRAW_STATES
        if exact:
            return self.exact().sample(rows, lengths, rng)
        from ...mc.lattice import LatticeState, LatticeTarget, sweep

        p = self.layout_.expand(self.theta_)
        target = LatticeTarget(p["token"], p["coupling"], p["cross"], self.layout_.pairs, rows, lengths)
        state = sweep(target, LatticeState.initial(target, rng), n_sweeps, self.update)
        inside = np.arange(rows.shape[1])[None, None, :] < lengths[:, None, None]
        return np.where(inside, state.spins, 0)

