"""Power-law couplings fitted to expert sequences: ``J(r) = J / r^(1 + sigma)`` by pseudo-likelihood.

Model (``docs/conventions.md``, *The power-law chain*; Potts form): for every sequence,

.. math::

    P(x \\mid t) \\propto \\exp\\Big(\\sum_i \\phi_i(x_i) + J \\sum_{i<j,\\ j-i \\le R} w_\\sigma(j - i)\\,
    \\delta(x_i, x_j)\\Big), \\qquad w_\\sigma(d) = d^{-(1+\\sigma)},

with site fields ``phi_i(a) = b(a) [+ P_i(a)] [+ T_{row(t_i)}(a)]`` (expert biases, optional free
position fields, optional token fields for the ``token_rows - 1`` most frequent token ids plus one
pooled row) and ``R = max_range`` (``None``: every distance in the sequence, no cutoff).

Fit. The pseudo-likelihood ``sum_i log P(x_i | x_{-i}, t)`` (each observed site given every other
observed site of its sequence) is exact to evaluate, ``O(R)`` per site with a cutoff and one
Toeplitz product per sequence without: the conditional of a site is a softmax of
``phi_i(a) + J S_i(a)``, ``S_i(a) = sum_{j != i} w_sigma(|i - j|) delta(a, x_j)``, and its gradient
in ``sigma`` uses ``dw/dsigma = -ln(d) w``. L-BFGS-B on ``(fields, J, sigma)`` with a weak L2 prior
on the fields (``l2``, as the other fitters); ``sigma`` is kept in ``sigma_bounds``. Pseudo-likelihood
is consistent (it recovers the parameters of data drawn from the model) but it is not the
likelihood: it cannot be compared with other models' likelihoods. Hidden sites (``mask`` False
inside a length) are left out of the conditionals, an approximation where they are many.

Standard errors of ``(J, sigma)`` (fits with biases only): the sandwich ``H^{-1} V H^{-1}`` with
``H`` the Hessian of the negative pseudo-log-likelihood and ``V`` the covariance of its
per-sequence scores (sequences independent), the standard errors of M-estimators.

Likelihood. With a cutoff ``R`` and ``q^(R+1) <= MAX_EXACT_CODES``, :meth:`log_likelihood` is the
exact, normalised ``log P(observed | tokens)`` of every sequence (forward recursion over the
``q^R`` windows, hidden sites summed): the held-out score of the decomposition's
``+power-law couplings`` row.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from .._util import RngLike, as_generator, as_int
from ..errors import ConvergenceWarning, InvalidParameterError
from ._power_law_kernels import (pseudo_likelihood_terms, sample_sequences, sequence_log_likelihood_gradients,
                                 sequence_log_likelihoods)
from .conditional.params import ConditionalData, TokenVocabulary

__all__ = ["PowerLawPseudoLikelihood", "PowerLawMaxLikelihood", "PowerLawFitResult", "MAX_EXACT_CODES",
           "exact_range"]

#: largest q^(R+1) of the exact forward recursion (windows times states)
MAX_EXACT_CODES = 1 << 15
#: the sandwich errors need the Hessian: only for fits with at most this many parameters
_MAX_SANDWICH = 200


@dataclass(frozen=True)
class PowerLawFitResult:
    """The summary of a power-law fit (the ``result_`` of :class:`PowerLawPseudoLikelihood` and
    :class:`PowerLawMaxLikelihood`, the interface of the other fitters' results).

    Attributes
    ----------
    coupling, sigma : float
    coupling_stderr, sigma_stderr : float
        NaN when not computed (see ``stderr_message``).
    n_parameters : int
    success : bool
    message : str
    n_iter : int
    objective : str
        ``"pseudo-likelihood"`` or ``"likelihood"``.
    log_likelihood : float
        The maximised objective on the training data (total over observed tokens; the exact
        log-likelihood for :class:`PowerLawMaxLikelihood`, the pseudo-log-likelihood otherwise:
        not comparable with other models' likelihoods).
    stderr_message : str
    """

    coupling: float
    sigma: float
    coupling_stderr: float
    sigma_stderr: float
    n_parameters: int
    success: bool
    message: str
    n_iter: int
    objective: str
    log_likelihood: float
    stderr_message: str = ""


def exact_range(n_states: int, cap: int = 8) -> int:
    """Largest ``R <= cap`` with ``q^(R+1) <= MAX_EXACT_CODES`` (at least 1)."""
    r = 1
    while r < cap and n_states ** (r + 2) <= MAX_EXACT_CODES:
        r += 1
    return r


class PowerLawPseudoLikelihood:
    """Fit ``(J, sigma)`` of Potts couplings ``J / r^(1 + sigma)`` and site fields by pseudo-likelihood.

    Parameters
    ----------
    max_range : int or None, default None
        Couplings up to this distance (``None``: all distances of the sequence).
    position : bool, default False
        Free position fields ``P_i(a)`` (else expert biases ``b(a)`` only).
    token_rows : int, default 0
        Token field rows (the most frequent ids, plus one pooled row); 0: no token fields.
    l2 : float, default 0.1
        L2 prior on the fields (not on ``J`` or ``sigma``).
    sigma_bounds : (float, float), default (-0.9, 10)
    max_iter : int, default 1000
    tol : float, default 1e-8
        ``ftol`` of L-BFGS-B on the objective per token.

    Attributes
    ----------
    coupling_, sigma_ : float
        ``J`` and ``sigma``.
    coupling_stderr_, sigma_stderr_ : float
        Sandwich standard errors (NaN when not computed: more than a few hundred parameters).
    bias_ : ndarray, shape (q,)
    position_fields_ : ndarray, shape (n_sites, q) or None
    token_fields_ : ndarray, shape (token_rows, q) or None
    vocabulary_ : TokenVocabulary or None
    n_states_, n_sites_, max_range_ : int
    success_ : bool
    message_ : str
    n_iter_ : int
    pseudo_log_likelihood_ : float
        Per observed token, at the optimum (prior excluded).
    """

    def __init__(self, max_range: int | None = None, position: bool = False, token_rows: int = 0, l2: float = 0.1,
                 sigma_bounds=(-0.9, 10.0), max_iter: int = 1000, tol: float = 1e-8):
        self.max_range = max_range
        self.position = position
        self.token_rows = token_rows
        self.l2 = l2
        self.sigma_bounds = sigma_bounds
        self.max_iter = max_iter
        self.tol = tol

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in ("max_range", "position", "token_rows", "l2", "sigma_bounds",
                                              "max_iter", "tol")}

    # ------------------------------------------------------------------ data
    def _data(self, states, tokens, mask, lengths, n_states):
        data = ConditionalData.from_arrays(states, tokens, mask, lengths, n_states)
        return data

    def _range(self, q):
        return None if self.max_range is None else as_int(self.max_range, "max_range", minimum=1)

    def _rows(self, data):
        if self.vocabulary_ is None:
            return None
        if data.tokens is None:
            raise InvalidParameterError("this model has token fields: pass the sequences' tokens")
        return self.vocabulary_.rows(data.tokens)

    # ------------------------------------------------------------------ model pieces
    def _weights(self, n, sigma):
        """``w(d)`` and ``dw/dsigma`` at ``d = 0..R`` (``R = max_range`` or ``n - 1``; ``w(0) = 0``)."""
        r = max(1, n - 1 if self.max_range_ is None else min(self.max_range_, n - 1))
        d = np.arange(r + 1, dtype=float)
        w = np.zeros(r + 1)
        w[1:] = d[1:] ** -(1.0 + sigma)
        dw = -np.log(np.where(d > 0, d, 1.0)) * w
        return w, dw

    def _unpack(self, theta, n, q, n_rows):
        k = 0
        bias = theta[k: k + q]
        k += q
        pos = None
        if self.position:
            pos = theta[k: k + n * q].reshape(n, q)
            k += n * q
        tok = None
        if n_rows:
            tok = theta[k: k + n_rows * q].reshape(n_rows, q)
            k += n_rows * q
        return bias, pos, tok, theta[k], theta[k + 1]

    def _phi(self, bias, pos, tok, rows, shape):
        s, n, q = shape
        phi = np.broadcast_to(bias, shape).copy()
        if pos is not None:
            phi += pos[None, :n]
        if tok is not None:
            phi += tok[rows]
        return phi

    def _terms(self, theta, states, obs, rows, n_rows):
        """Per-sequence objective, its field gradient (S, n, q) and its derivatives in ``J`` and ``sigma``."""
        n_seq, n = states.shape
        q = self.n_states_
        bias, pos, tok, j, sigma = self._unpack(theta, n, q, n_rows)
        w, dw = self._weights(n, sigma)
        phi = self._phi(bias, pos, tok, rows, (n_seq, n, q))
        g = np.empty_like(phi)
        ll, gj, gs = np.empty(n_seq), np.empty(n_seq), np.empty(n_seq)
        pseudo_likelihood_terms(states, obs, phi, w, dw, float(j), g, ll, gj, gs)
        return ll, g, gj, gs

    def _objective(self, theta, states, obs, rows, n_rows, per_sequence=False):
        """Negative objective per token (+ prior) and its gradient (or, with ``per_sequence``, the
        per-sequence scores of the biases, ``J`` and ``sigma``)."""
        q = self.n_states_
        ll, g, gj, gs = self._terms(theta, states, obs, rows, n_rows)
        if per_sequence:
            return np.concatenate([g.sum(axis=1), gj[:, None], gs[:, None]], axis=1)
        grads = [g.sum(axis=(0, 1))]
        if self.position:
            grads.append(g.sum(axis=0).ravel())
        if n_rows:
            r_all, g_all = rows.ravel(), g.reshape(-1, q)  # g is 0 wherever a site does not enter
            gt = np.stack([np.bincount(r_all, weights=g_all[:, a], minlength=n_rows) for a in range(q)], axis=1)
            grads.append(gt.ravel())
        grads.append(np.array([gj.sum(), gs.sum()]))
        grad = -np.concatenate(grads)
        n_tok = obs.sum()
        n_fields = theta.size - 2
        value = (-ll.sum() + 0.5 * self.l2 * theta[:n_fields] @ theta[:n_fields]) / n_tok
        grad[:n_fields] += self.l2 * theta[:n_fields]
        return value, grad / n_tok

    # ------------------------------------------------------------------ fit
    def fit(self, states, tokens=None, mask=None, lengths=None, *, n_states: int | None = None,
            init=None) -> PowerLawPseudoLikelihood:
        """Fit to expert sequences (n_sequences, n_sites); returns ``self``.

        ``init``: optional dict of starting values: ``coupling``, ``sigma``, ``bias`` (q,),
        ``position`` (n_sites, q), ``token`` (token_rows, q) (e.g. the fields of a fitted
        :class:`~ising_moe.fit.conditional.ConditionalChain` on the same training data and rows).
        """
        data = self._data(states, tokens, mask, lengths, n_states)
        q, n = data.chain.n_states, data.chain.n_sites
        if self.l2 < 0:
            raise InvalidParameterError(f"l2 must be >= 0, got {self.l2}")
        self.max_range_ = self._range(q)
        token_rows = as_int(self.token_rows, "token_rows", minimum=0)
        self.vocabulary_ = TokenVocabulary.build(data, token_rows) if token_rows else None
        n_rows = self.vocabulary_.n_rows if self.vocabulary_ is not None else 0
        rows = self._rows(data)
        obs = np.ascontiguousarray(data.chain.observed)
        states = np.ascontiguousarray(data.chain.states, dtype=np.int64)
        self.n_states_, self.n_sites_ = q, n
        self._fit_lengths = np.ascontiguousarray(data.chain.lengths, dtype=np.int64)
        n_par = q + (n * q if self.position else 0) + n_rows * q + 2
        theta0 = np.zeros(n_par)
        counts = np.bincount(states[obs], minlength=q) + 0.5
        theta0[:q] = np.log(counts / counts.sum())
        init = init or {}
        theta0[-2] = float(init.get("coupling", 0.1))
        theta0[-1] = float(init.get("sigma", 1.0))
        k = 0
        for key, size, on in (("bias", q, True), ("position", n * q, self.position), ("token", n_rows * q, n_rows)):
            if not on:
                continue
            if init.get(key) is not None:
                value = np.asarray(init[key], float).ravel()
                if value.size != size:
                    raise InvalidParameterError(f"init[{key!r}] has {value.size} values, the model {size}")
                theta0[k: k + size] = value
            k += size
        lo, hi = self.sigma_bounds
        bounds = [(None, None)] * (n_par - 1) + [(lo, hi)]
        res = optimize.minimize(self._objective, theta0, args=(states, obs, rows, n_rows), jac=True, method="L-BFGS-B",
                                bounds=bounds, options=self._optimiser_options())
        theta = res.x
        self.theta_ = theta
        bias, pos, tok, j, sigma = self._unpack(theta, n, q, n_rows)
        self.bias_, self.position_fields_, self.token_fields_ = bias.copy(), pos, tok
        self.coupling_, self.sigma_ = float(j), float(sigma)
        self.success_, self.message_, self.n_iter_ = bool(res.success), str(res.message), int(res.nit)
        self._n_tokens = int(obs.sum())
        prior = 0.5 * self.l2 * theta[:-2] @ theta[:-2] / obs.sum()
        self.pseudo_log_likelihood_ = float(-(res.fun - prior))
        self.n_parameters_ = n_par
        self.coupling_stderr_ = self.sigma_stderr_ = math.nan
        at_bound = sigma <= lo + 1e-9 or sigma >= hi - 1e-9
        self._post_optimise(res, theta, states, obs, rows, n_rows)
        if not self.success_:
            stderr_message = "not computed: the fit did not converge"
        elif not math.isfinite(self.sigma_):
            stderr_message = "not computed: sigma is not identified with R = 1"
        elif at_bound:
            stderr_message = "not computed: sigma at a bound of sigma_bounds"
        elif n_par > _MAX_SANDWICH or self.position or n_rows:
            stderr_message = (f"not computed: sandwich errors only for fits with expert biases alone "
                              f"(at most {_MAX_SANDWICH} parameters)")
        else:
            self.coupling_stderr_, self.sigma_stderr_ = self._sandwich(theta, states, obs)
            stderr_message = "sandwich H^-1 V H^-1 of the per-sequence scores"
        self.result_ = PowerLawFitResult(
            coupling=self.coupling_, sigma=self.sigma_, coupling_stderr=self.coupling_stderr_,
            sigma_stderr=self.sigma_stderr_, n_parameters=n_par, success=self.success_, message=self.message_,
            n_iter=self.n_iter_, objective=self._objective_name, log_likelihood=self._objective_total(),
            stderr_message=stderr_message)
        if not self.success_:
            warnings.warn(f"{type(self).__name__} did not converge: {self.message_}", ConvergenceWarning,
                          stacklevel=2)
        return self

    _objective_name = "pseudo-likelihood"

    def _optimiser_options(self):
        return {"maxiter": self.max_iter, "ftol": self.tol, "gtol": 1e-7}

    def _post_optimise(self, res, theta, states, obs, rows, n_rows):
        """Hook after the optimiser (the exact fit adds its gradient check)."""

    def _objective_total(self) -> float:
        return float(self.pseudo_log_likelihood_ * self._n_tokens)

    def _sandwich(self, theta, states, obs):
        """Sandwich standard errors of ``(J, sigma)``; the Hessian by central differences of the gradient."""
        n_tok = obs.sum()
        k = theta.size
        hess = np.empty((k, k))
        for a in range(k):
            step = 1e-5 * max(1.0, abs(theta[a]))
            e = np.zeros(k)
            e[a] = step
            gp = self._objective(theta + e, states, obs, None, 0)[1]
            gm = self._objective(theta - e, states, obs, None, 0)[1]
            hess[:, a] = (gp - gm) / (2 * step) * n_tok
        hess = 0.5 * (hess + hess.T)
        hess[np.arange(k - 2), np.arange(k - 2)] -= self.l2  # the prior is not part of the estimating equation
        scores = self._objective(theta, states, obs, None, 0, per_sequence=True)
        v = np.cov(scores, rowvar=False, bias=True) * scores.shape[0]
        # biases have a gauge direction (all shifted together): pseudo-inverse on its complement
        h_inv = np.linalg.pinv(hess, rcond=1e-10)
        cov = h_inv @ v @ h_inv
        return float(np.sqrt(max(cov[-2, -2], 0))), float(np.sqrt(max(cov[-1, -1], 0)))

    def _check_fitted(self):
        if not hasattr(self, "theta_"):
            raise InvalidParameterError("this PowerLawPseudoLikelihood is not fitted yet: call fit(states) first")

    # ------------------------------------------------------------------ the fitted model
    def site_fields(self, tokens=None, n_sites: int | None = None) -> np.ndarray:
        """Site fields ``phi_i(a)`` of one sequence, shape (n_sites, q) (``tokens``: its ids)."""
        self._check_fitted()
        n = self.n_sites_ if n_sites is None else as_int(n_sites, "n_sites", 1, self.n_sites_)
        phi = np.broadcast_to(self.bias_, (n, self.n_states_)).copy()
        if self.position_fields_ is not None:
            phi += self.position_fields_[:n]
        if self.token_fields_ is not None:
            if tokens is None:
                raise InvalidParameterError("this model has token fields: pass the sequence's tokens")
            phi += self.token_fields_[self.vocabulary_.rows(np.asarray(tokens, np.int64)[:n])]
        return phi

    def to_chain(self, tokens=None, n_sites: int | None = None):
        """The fitted model of one sequence as a :class:`~ising_moe.PowerLawChain` (Potts form, ``beta = 1``).

        Without a cutoff only (the chain has every distance).
        """
        from ..power_law import PowerLawChain

        if self.max_range_ is not None:
            raise InvalidParameterError("to_chain needs a fit without max_range (a PowerLawChain has every distance)")
        phi = self.site_fields(tokens, n_sites)
        return PowerLawChain.potts(phi.shape[0], self.n_states_, self.coupling_, self.sigma_, field=phi)

    def log_likelihood(self, states, tokens=None, mask=None, lengths=None) -> np.ndarray:
        """Exact normalised ``log P(observed states | tokens)`` of every sequence, shape (S,).

        Needs a cutoff ``max_range = R`` with ``q^(R+1) <= MAX_EXACT_CODES`` (see :func:`exact_range`).
        """
        self._check_fitted()
        q = self.n_states_
        if self.max_range_ is None or q ** (self.max_range_ + 1) > MAX_EXACT_CODES:
            raise InvalidParameterError(
                f"the exact likelihood needs max_range R with q^(R+1) <= {MAX_EXACT_CODES} "
                f"(R <= {exact_range(q)} for q = {q}); fit with max_range set")
        data = self._data(states, tokens, mask, lengths, q)
        n = data.chain.n_sites
        if n > self.n_sites_ and self.position_fields_ is not None:
            raise InvalidParameterError(f"sequences of {n} positions, the fit has {self.n_sites_}")
        bias, pos, tok, j, sigma = self._unpack(self.theta_, self.n_sites_, q,
                                                0 if self.vocabulary_ is None else self.vocabulary_.n_rows)
        rows = self._rows(data)
        phi = np.ascontiguousarray(self._phi(bias, pos, tok, rows, (data.chain.states.shape[0], n, q)))
        r = min(self.max_range_, max(n - 1, 1))
        jr = j * np.arange(1, r + 1, dtype=float) ** -(1.0 + sigma)
        out = np.empty(phi.shape[0])
        sequence_log_likelihoods(phi, jr, data.chain.states.astype(np.int64), data.chain.observed,
                                 data.chain.lengths.astype(np.int64), out)
        return out

    def model_correlation_function(self, max_distance: int, n_sites: int | None = None, n_sweeps: int = 4000,
                                   rng: RngLike = None):
        """Model ``C(r)``, ``r = 0..max_distance``, of a fit without tokens, by Monte Carlo.

        Simulates :meth:`to_chain` (open, ``n_sites`` sites) with the O(N) Swendsen-Wang when
        ``J >= 0`` (else heat-bath) and returns its ``C(r)`` (``MCResult.correlation_function``)
        and the standard errors of the overlaps (autocorrelation-corrected).

        Returns
        -------
        c : ndarray of shape (max_distance + 1,)
        err : ndarray of shape (max_distance + 1,)
        """
        from ..mc import simulate

        if self.token_fields_ is not None:
            raise InvalidParameterError("model_correlation_function covers fits without token fields")
        chain = self.to_chain(None, n_sites)
        update = "swendsen-wang" if self.coupling_ >= 0 else "heat-bath"
        run = simulate(chain, update, n_sweeps, n_chains=4, n_burnin=200, rng=as_generator(rng),
                       max_distance=max_distance)
        err = np.array([0.0] + [run.stats(f"overlap:{r}").error for r in range(1, max_distance + 1)])
        return run.correlation_function(), err

    def sample(self, n_draws: int, tokens=None, lengths=None, n_sites: int | None = None,
               rng: RngLike = None) -> np.ndarray:
        """Exact draws of the fitted cutoff-R model, ``n_draws`` per sequence, shape (S, n_draws, n_sites).

        Forward filtering, backward sampling over the ``q^R`` windows (needs ``max_range`` with
        ``q^(R+1) <= MAX_EXACT_CODES``). ``tokens`` (S, n_sites): the sequences' ids (needed with
        token fields); without tokens one sequence of ``n_sites`` sites (default: the fit's). ``-1``
        past each length.
        """
        self._check_fitted()
        q = self.n_states_
        if self.max_range_ is None or q ** (self.max_range_ + 1) > MAX_EXACT_CODES:
            raise InvalidParameterError(f"sample needs a fit with max_range R and q^(R+1) <= {MAX_EXACT_CODES}")
        n_draws = as_int(n_draws, "n_draws", minimum=1)
        if tokens is None:
            n = self.n_sites_ if n_sites is None else as_int(n_sites, "n_sites", 1, self.n_sites_)
            phi = self.site_fields(None, n)[None]
        else:
            tokens = np.atleast_2d(np.asarray(tokens, np.int64))
            n = tokens.shape[1]
            phi = np.stack([self.site_fields(t, n) for t in tokens])
        n_seq = phi.shape[0]
        lengths = np.full(n_seq, n, np.int64) if lengths is None else np.asarray(lengths, np.int64).reshape(n_seq)
        if lengths.min() < 1 or lengths.max() > n:
            raise InvalidParameterError(f"lengths must be in 1..{n}")
        r = min(self.max_range_, max(n - 1, 1))
        jr = self.coupling_ * np.arange(1, r + 1, dtype=float) ** -(1.0 + self.sigma_)
        uniforms = as_generator(rng).random((n_seq, n_draws, n))
        out = np.empty((n_seq, n_draws, n), np.int64)
        sample_sequences(np.ascontiguousarray(phi), jr, lengths, uniforms, out)
        return out


class PowerLawMaxLikelihood(PowerLawPseudoLikelihood):
    """Exact maximum likelihood of ``(J, sigma)`` and the site fields of the cutoff-R power-law chain.

    The model of :class:`PowerLawPseudoLikelihood` with couplings up to ``R = max_range``
    (default :func:`exact_range`: the largest with ``q^(R+1) <= MAX_EXACT_CODES``). The objective is
    the exact log-likelihood ``sum_s log P(observed_s | tokens_s)`` (hidden sites summed over, the
    score :meth:`log_likelihood` gives on held-out data) plus the fields' L2 prior. Its gradient is
    exact: the clamped minus the free posterior expectations of the sufficient statistics (site
    marginals and ``sum_i P(x_i = x_{i-r})``), from one forward-backward pass over the ``q^R``
    windows each, ``O(L q^(R+1))`` per sequence; ``d/dJ = sum_r w_r g_r`` and
    ``d/dsigma = -J sum_r ln(r) w_r g_r``.

    Start: the pseudo-likelihood fit of the same model (kept as ``pseudo_likelihood_``), or ``init``
    passed through to it. Optimiser: L-BFGS-B (``ftol = tol``, ``gtol = grad_tol / 10``,
    ``max_iter``), ``sigma`` in ``sigma_bounds``.

    Convergence rule (stated): ``success_`` is True only when L-BFGS-B reports convergence **and**
    the largest projected gradient component of the objective per token, ``max_gradient_``, is at
    most ``grad_tol`` (a ``sigma`` at a bound counts only its inward component). Otherwise
    ``success_`` is False, a :class:`~ising_moe.errors.ConvergenceWarning` is issued and no
    standard errors are reported (NaN, reason in ``result_.stderr_message``).

    Standard errors of ``(J, sigma)``: the sandwich ``H^-1 V H^-1`` of the exact per-sequence
    scores (fits with expert biases only; with position or token fields NaN, with the reason).
    ``R = 1`` leaves ``sigma`` unidentified (``w(1) = 1`` for every ``sigma``): ``sigma_`` is then
    NaN.

    Parameters
    ----------
    max_range : int or None, default None
        ``R`` (``None``: :func:`exact_range` of the data's ``q``).
    position, token_rows, l2, sigma_bounds, max_iter
        As in :class:`PowerLawPseudoLikelihood`.
    tol : float, default 1e-10
        ``ftol`` of L-BFGS-B.
    grad_tol : float, default 1e-4
        The convergence rule's bound on the projected gradient per token.

    Attributes
    ----------
    As :class:`PowerLawPseudoLikelihood`, and
    log_likelihood_ : float
        Exact training log-likelihood per observed token at the optimum (prior excluded) [nats].
    max_gradient_ : float
    pseudo_likelihood_ : PowerLawPseudoLikelihood
        The start.
    result_ : PowerLawFitResult
    """

    _objective_name = "likelihood"

    def __init__(self, max_range: int | None = None, position: bool = False, token_rows: int = 0, l2: float = 0.1,
                 sigma_bounds=(-0.9, 10.0), max_iter: int = 1000, tol: float = 1e-10, grad_tol: float = 1e-4):
        super().__init__(max_range=max_range, position=position, token_rows=token_rows, l2=l2,
                         sigma_bounds=sigma_bounds, max_iter=max_iter, tol=tol)
        self.grad_tol = grad_tol

    def get_params(self) -> dict:
        return {**super().get_params(), "grad_tol": self.grad_tol}

    def _range(self, q):
        r = exact_range(q) if self.max_range is None else as_int(self.max_range, "max_range", minimum=1)
        if q ** (r + 1) > MAX_EXACT_CODES:
            raise InvalidParameterError(f"the exact likelihood needs q^(R+1) <= {MAX_EXACT_CODES}: R <= "
                                        f"{exact_range(q)} for q = {q}, got max_range = {r}")
        return r

    def _terms(self, theta, states, obs, rows, n_rows):
        n_seq, n = states.shape
        q = self.n_states_
        bias, pos, tok, j, sigma = self._unpack(theta, n, q, n_rows)
        r = min(self.max_range_, max(n - 1, 1))
        d = np.arange(1, r + 1, dtype=float)
        w = d ** -(1.0 + sigma)
        phi = np.ascontiguousarray(self._phi(bias, pos, tok, rows, (n_seq, n, q)))
        ll, g, gr = np.empty(n_seq), np.empty_like(phi), np.empty((n_seq, r))
        sequence_log_likelihood_gradients(phi, float(j) * w, states, obs, self._fit_lengths, ll, g, gr)
        return ll, g, gr @ w, float(j) * (gr @ (-np.log(d) * w))

    def fit(self, states, tokens=None, mask=None, lengths=None, *, n_states: int | None = None,
            init=None) -> PowerLawMaxLikelihood:
        """Fit to expert sequences (n_sequences, n_sites); returns ``self``.

        ``init``: starting values of the pseudo-likelihood start (see
        :meth:`PowerLawPseudoLikelihood.fit`).
        """
        q = ConditionalData.from_arrays(states, tokens, mask, lengths, n_states).chain.n_states
        params = {k: v for k, v in self.get_params().items() if k not in ("grad_tol", "tol")}
        params["max_range"] = self._range(q)
        start = PowerLawPseudoLikelihood(**params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            start.fit(states, tokens, mask, lengths, n_states=q, init=init)
        self.pseudo_likelihood_ = start
        begin = {"coupling": start.coupling_, "sigma": start.sigma_, "bias": start.bias_,
                 "position": start.position_fields_, "token": start.token_fields_}
        super().fit(states, tokens, mask, lengths, n_states=q, init=begin)
        return self

    def _optimiser_options(self):
        return {"maxiter": self.max_iter, "ftol": self.tol, "gtol": self.grad_tol / 10}

    def _post_optimise(self, res, theta, states, obs, rows, n_rows):
        grad = np.array(res.jac, dtype=float)
        lo, hi = self.sigma_bounds
        if theta[-1] <= lo + 1e-9:
            grad[-1] = min(grad[-1], 0.0)  # only a descent direction into the box counts
        elif theta[-1] >= hi - 1e-9:
            grad[-1] = max(grad[-1], 0.0)
        self.max_gradient_ = float(np.abs(grad).max())
        self.log_likelihood_ = self.pseudo_log_likelihood_
        del self.pseudo_log_likelihood_
        if self.success_ and self.max_gradient_ > self.grad_tol:
            self.success_ = False
            self.message_ = (f"{self.message_}; but the largest projected gradient per token "
                             f"{self.max_gradient_:.2g} > grad_tol = {self.grad_tol:g}")
        if self.max_range_ < 2:
            self.sigma_ = math.nan

    def _objective_total(self) -> float:
        return float(self.log_likelihood_ * self._n_tokens)
