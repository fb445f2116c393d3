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

import numpy as np
from scipy import optimize

from .._util import RngLike, as_generator, as_int
from ..errors import ConvergenceWarning, InvalidParameterError
from ._power_law_kernels import pseudo_likelihood_terms, sequence_log_likelihoods
from .conditional.params import ConditionalData, TokenVocabulary

__all__ = ["PowerLawPseudoLikelihood", "MAX_EXACT_CODES", "exact_range"]

#: largest q^(R+1) of the exact forward recursion (windows times states)
MAX_EXACT_CODES = 1 << 15
#: the sandwich errors need the Hessian: only for fits with at most this many parameters
_MAX_SANDWICH = 200


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

    def _objective(self, theta, states, obs, rows, n_rows, per_sequence=False):
        """Negative pseudo-log-likelihood per token (+ prior) and its gradient (or, with
        ``per_sequence``, the per-sequence scores of the biases, ``J`` and ``sigma``)."""
        n_seq, n = states.shape
        q = self.n_states_
        bias, pos, tok, j, sigma = self._unpack(theta, n, q, n_rows)
        w, dw = self._weights(n, sigma)
        phi = self._phi(bias, pos, tok, rows, (n_seq, n, q))
        g = np.empty_like(phi)
        ll, gj, gs = np.empty(n_seq), np.empty(n_seq), np.empty(n_seq)
        pseudo_likelihood_terms(states, obs, phi, w, dw, float(j), g, ll, gj, gs)
        if per_sequence:
            return np.concatenate([g.sum(axis=1), gj[:, None], gs[:, None]], axis=1)
        grads = [g.sum(axis=(0, 1))]
        if pos is not None:
            grads.append(g.sum(axis=0).ravel())
        if tok is not None:
            r_obs, g_obs = rows[obs], g[obs]
            gt = np.stack([np.bincount(r_obs, weights=g_obs[:, a], minlength=n_rows) for a in range(q)], axis=1)
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
        if self.max_range is not None:
            as_int(self.max_range, "max_range", minimum=1)
        if self.l2 < 0:
            raise InvalidParameterError(f"l2 must be >= 0, got {self.l2}")
        self.max_range_ = None if self.max_range is None else int(self.max_range)
        token_rows = as_int(self.token_rows, "token_rows", minimum=0)
        self.vocabulary_ = TokenVocabulary.build(data, token_rows) if token_rows else None
        n_rows = self.vocabulary_.n_rows if self.vocabulary_ is not None else 0
        rows = self._rows(data)
        obs = np.ascontiguousarray(data.chain.observed)
        states = np.ascontiguousarray(data.chain.states, dtype=np.int64)
        self.n_states_, self.n_sites_ = q, n
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
                                bounds=bounds, options={"maxiter": self.max_iter, "ftol": self.tol, "gtol": 1e-7})
        theta = res.x
        self.theta_ = theta
        bias, pos, tok, j, sigma = self._unpack(theta, n, q, n_rows)
        self.bias_, self.position_fields_, self.token_fields_ = bias.copy(), pos, tok
        self.coupling_, self.sigma_ = float(j), float(sigma)
        self.success_, self.message_, self.n_iter_ = bool(res.success), str(res.message), int(res.nit)
        prior = 0.5 * self.l2 * theta[:-2] @ theta[:-2] / obs.sum()
        self.pseudo_log_likelihood_ = float(-(res.fun - prior))
        self.n_parameters_ = n_par
        self.coupling_stderr_ = self.sigma_stderr_ = math.nan
        at_bound = sigma <= lo + 1e-9 or sigma >= hi - 1e-9
        if n_par <= _MAX_SANDWICH and not self.position and not n_rows and not at_bound:
            self.coupling_stderr_, self.sigma_stderr_ = self._sandwich(theta, states, obs)
        if not self.success_:
            warnings.warn(f"PowerLawPseudoLikelihood did not converge: {self.message_}", ConvergenceWarning,
                          stacklevel=2)
        return self

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
