"""Conditional chains (linear-chain CRFs): routing given the tokens, exact maximum likelihood.

:class:`ConditionalChain` models ``P(experts | tokens)`` of every sequence as a chain whose site
fields are ``position_field[i] + token_field[t_i]`` (see :mod:`~ising_moe.fit.conditional.params`
for the model and its gauge) with nearest-neighbour couplings and optionally a Potts coupling at
distance 2. The likelihood is exact (one forward-backward pass per sequence, hidden sites summed
over), the objective convex; L-BFGS with a block preconditioner and the exact gradient; an L2
prior (``l2``, as in :class:`~ising_moe.fit.ChainMaxLikelihood`) keeps rare cells finite.

Nested special cases (the decomposition of issue 14): ``token_rows=0`` gives the unconditional
chain of :class:`~ising_moe.fit.ChainMaxLikelihood` (same likelihood), ``couplings="none"``
independent sites given the tokens, ``position="none"`` token-only fields.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..._util import as_int
from ...errors import ConvergenceWarning, InvalidParameterError
from .objective import MAX_HESSIAN_PARAMS, CRFObjective, CRFPreconditioner, minimize
from .params import (
    ConditionalData,
    CRFLayout,
    TokenVocabulary,
    position_basis,
)

__all__ = ["ConditionalChain", "ConditionalFitResult"]


@dataclass(frozen=True, eq=False)
class ConditionalFitResult:
    """Result of a conditional-chain (or mixture) fit.

    Attributes
    ----------
    method : str
        ``"conditional-ml"`` or ``"mixture-ml"``.
    position_variant, couplings_variant : str
    token_rows : int
        Rows of the token table including the pooled row (0: no token fields).
    max_range : int
    n_components : int
    success : bool
    message : str
    n_iter : int
    log_likelihood : float
        Exact log-likelihood of the (weighted) training data, prior excluded.
    n_tokens : float
        (Weighted) observed tokens.
    n_parameters : int
    aic, bic : float
    l2 : float
    position_fields : ndarray, shape (K, n_sites, q)
    token_fields : ndarray, shape (K, token_rows or 1, q)
    couplings : ndarray, shape (K, q, q)
    coupling2 : ndarray, shape (K,)
        Potts coupling at distance 2 (0 at range 1).
    weights : ndarray, shape (K,)
        Mixture weights ``pi_k`` (``[1]`` for one chain).
    stderr : dict of str -> ndarray, or None
        Standard errors of the reported parameters (same keys and shapes), from the inverse
        Hessian of the negative log-posterior.
    theta, theta_stderr : ndarray
    vocabulary : ndarray of int64, shape (token_rows - 1,)
        Token id of every row but the pooled last one.
    token_counts : ndarray, shape (token_rows,)
        Training occurrences of every row (the weights of the reported gauge).
    """

    method: str
    position_variant: str
    couplings_variant: str
    token_rows: int
    max_range: int
    n_components: int
    success: bool
    message: str
    n_iter: int
    log_likelihood: float
    n_tokens: float
    n_parameters: int
    aic: float
    bic: float
    l2: float
    position_fields: np.ndarray = field(repr=False)
    token_fields: np.ndarray = field(repr=False)
    couplings: np.ndarray = field(repr=False)
    coupling2: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)
    stderr: dict | None = field(default=None, repr=False)
    theta: np.ndarray | None = field(default=None, repr=False)
    theta_stderr: np.ndarray | None = field(default=None, repr=False)
    vocabulary: np.ndarray | None = field(default=None, repr=False)
    token_counts: np.ndarray | None = field(default=None, repr=False)

    @property
    def log_likelihood_per_token(self) -> float:
        return self.log_likelihood / self.n_tokens

    @property
    def variant(self) -> str:
        tok = f"+tokens{self.token_rows}" if self.token_rows else ""
        rng = "+range2" if self.max_range == 2 else ""
        mix = f"+mixture{self.n_components}" if self.n_components > 1 else ""
        return f"{self.method}:{self.position_variant}{tok}/{self.couplings_variant}{rng}{mix}"

    def params(self) -> dict:
        """The parameters as a dict (``init`` of a new fit)."""
        return {"position": self.position_fields, "token": self.token_fields, "coupling": self.couplings,
                "coupling2": self.coupling2, "log_pi": np.log(self.weights)}


def _layout_for(position, couplings, max_range, n_sites, n_states, vocab, n_components=1, vary="bias"):
    position_basis(position, n_sites)  # validates
    n_rows = vocab.n_rows if vocab is not None else 0
    ref = -1
    if vocab is not None and position != "none":
        ref = vocab.n_rows - 1 if vocab.counts[-1] > 0 else 0
    return CRFLayout(n_sites, n_states, position, n_rows, ref, couplings, max_range, n_components, vary)


def _start(data: ConditionalData, rows, layout: CRFLayout, weights) -> dict:
    """Independent-site start: log frequencies per position, and per token row relative to the
    overall frequencies (absolute without position fields)."""
    chain = data.chain
    q = layout.n_states
    obs = chain.observed
    w = np.broadcast_to(weights[:, None], obs.shape)[obs]
    site = np.zeros((chain.n_sites, q))
    pos = np.broadcast_to(np.arange(chain.n_sites), obs.shape)[obs]
    np.add.at(site, (pos, chain.states[obs]), w)
    row = np.zeros((max(layout.n_token_rows, 1), q))
    np.add.at(row, (rows[obs], chain.states[obs]), w)
    log_rate = np.log(site.sum(axis=0) + 0.5)
    token = np.log(row + 0.5)
    if layout.n_groups:
        token -= np.log(row.sum(axis=1, keepdims=True) + 0.5 * q) - np.log(site.sum() + 0.5 * q) + log_rate
    if not layout.n_token_rows:
        token[:] = 0.0
    return {"position": np.log(site + 0.5) if layout.n_groups else np.zeros_like(site), "token": token}


def _init_params(init, layout: CRFLayout, vocab) -> dict:
    """Parameters of a previous fit (a fitter, a result or a dict) mapped onto ``layout``."""
    res = getattr(init, "result_", init)
    params = dict(res.params()) if isinstance(res, ConditionalFitResult) else dict(init)
    q, n = layout.n_states, layout.n_sites
    pos = np.asarray(params.get("position", np.zeros((n, q))), dtype=float)
    pos = pos.reshape(-1, pos.shape[-2], q)
    if pos.shape[1] != n:
        raise InvalidParameterError(f"init has position fields for {pos.shape[1]} sites, the data {n}")
    tok = np.asarray(params.get("token", np.zeros((1, q))), dtype=float)
    tok = tok.reshape(-1, tok.shape[-2], q)
    rows = max(layout.n_token_rows, 1)
    init_ids = getattr(res, "vocabulary", None)
    if layout.n_token_rows and vocab is not None and init_ids is not None and tok.shape[1] == len(init_ids) + 1:
        # a fit on other sequences ranks other tokens: map rows by token id (unknown ids: the pooled row)
        where = {int(t): i for i, t in enumerate(init_ids)}
        pick = np.array([where.get(int(t), len(init_ids)) for t in vocab.ids] + [len(init_ids)], np.int64)
        tok = tok[:, pick]
    if tok.shape[1] != rows:
        if np.any(tok != 0):
            if layout.n_token_rows:
                raise InvalidParameterError(f"init has {tok.shape[1]} token rows, this fit {rows}: fit with the same "
                                            "training data and token_rows")
            # the new model has no token fields: fold the token fields' count-weighted mean into the positions
            pos = pos + tok.mean(axis=1, keepdims=True)
        tok = np.zeros((tok.shape[0], rows, q))
    out = {"position": pos, "token": tok, "has_token": bool(np.any(tok != 0)), "coupling": np.asarray(params.get("coupling", np.zeros((q, q)))),
           "coupling2": np.asarray(params.get("coupling2", 0.0))}
    if "log_pi" in params:
        out["log_pi"] = np.asarray(params["log_pi"])
    return out


class ConditionalChain:
    """Exact maximum-likelihood (MAP) conditional chain: routing given the token ids.

    Parameters
    ----------
    position : str, default "position"
        Position fields: ``"position"`` (free per site), ``"smooth:K"`` (K cosine functions),
        ``"blocks:B"``, ``"homogeneous"`` or ``"none"``.
    couplings : str, default "potts"
        ``"potts"``, ``"full"`` or ``"none"``.
    token_rows : int, default 1000
        Token ids with their own field row (the most frequent in the training data); the others
        share one pooled row. 0: no token fields (an unconditional chain).
    max_range : int, default 1
        2 adds a Potts coupling ``J2 (delta - 1/q)`` between sites at distance 2.
    l2 : float, default 0.1
        Prior precision of every gauge-fixed parameter.
    max_iter : int, default 2000
    tol : float, default 1e-5
        Largest preconditioned gradient component per token at convergence. The preconditioner
        makes the curvature ~1 per token, so the remaining step is ~``tol`` where a parameter's
        statistical error is ~``1 / sqrt(n_tokens)`` (3e-3 at 1e5 tokens), and the remaining
        log-likelihood below ``n_params tol^2 / 2`` per token.
    standard_errors : bool, default False
        Invert the Hessian of the negative log-posterior (finite differences of the exact gradient;
        skipped above 3000 parameters: bootstrap over sequences instead).

    Attributes
    ----------
    position_fields_ : ndarray, shape (n_sites, q)
    token_fields_ : ndarray, shape (token_rows, q)
        Reported gauge: zero-sum rows; with position fields, the count-weighted mean token row is zero.
    couplings_ : ndarray, shape (q, q)
    coupling2_ : float
    vocabulary_ : TokenVocabulary or None
    n_states_, n_sites_ : int
    result_ : ConditionalFitResult
    """

    _method = "conditional-ml"

    def __init__(self, position: str = "position", couplings: str = "potts", token_rows: int = 1000,
                 max_range: int = 1, l2: float = 0.1, max_iter: int = 2000, tol: float = 1e-5,
                 standard_errors: bool = False):
        self.position = position
        self.couplings = couplings
        self.token_rows = token_rows
        self.max_range = max_range
        self.l2 = l2
        self.max_iter = max_iter
        self.tol = tol
        self.standard_errors = standard_errors

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in ("position", "couplings", "token_rows", "max_range", "l2", "max_iter",
                                              "tol", "standard_errors")}

    # ------------------------------------------------------------------ shared with the mixture
    def _prepare(self, states, tokens, mask, lengths, n_states, sample_weight):
        if self.l2 < 0:
            raise InvalidParameterError(f"l2 must be >= 0, got {self.l2}")
        token_rows = as_int(self.token_rows, "token_rows", minimum=0)
        data = ConditionalData.from_arrays(states, tokens, mask, lengths, n_states)
        vocab = TokenVocabulary.build(data, token_rows) if token_rows else None
        rows = vocab.rows(data.tokens) if vocab is not None else np.zeros(data.chain.states.shape, np.int64)
        weights = np.ones(data.n_sequences) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        if weights.shape != (data.n_sequences,) or (weights < 0).any() or not np.isfinite(weights).all():
            raise InvalidParameterError(f"sample_weight must be {data.n_sequences} finite weights >= 0")
        return data, vocab, rows, weights

    def _finish(self, objective: CRFObjective, theta, vocab, *, success, message, n_iter, value=None):
        layout = objective.layout
        if value is None:
            ll = float(objective.log_likelihoods(theta)[1])
        else:  # from the final objective per token: no extra pass over the data
            ll = -(value * objective.n_tokens - self.l2 * layout.penalty(theta)[0])
        counts = vocab.counts.astype(float) if vocab is not None else None
        rep = layout.reported(layout.expand(theta), counts)
        stderr = theta_err = None
        if self.standard_errors and success:
            if layout.n_params <= MAX_HESSIAN_PARAMS:
                cov = objective.covariance(theta)
                if cov is None:
                    message += "; Hessian not positive definite: no standard errors"
                else:
                    theta_err = np.sqrt(np.clip(np.diag(cov), 0, None))
                    stderr = _reported_stderr(layout, cov, counts)
                    if layout.n_components > 1:
                        stderr["weights"] = _weights_stderr(layout, theta, cov)
            else:
                message += f"; no standard errors above {MAX_HESSIAN_PARAMS} parameters (bootstrap instead)"
        k = layout.n_params
        n_tok = objective.n_tokens
        self.result_ = ConditionalFitResult(
            method=self._method, position_variant=layout.position, couplings_variant=layout.couplings,
            token_rows=layout.n_token_rows, max_range=layout.max_range, n_components=layout.n_components,
            success=bool(success), message=message, n_iter=int(n_iter), log_likelihood=ll, n_tokens=n_tok,
            n_parameters=k, aic=2 * k - 2 * ll, bic=k * math.log(max(n_tok, 1.0)) - 2 * ll, l2=float(self.l2),
            position_fields=rep["position"], token_fields=rep["token"], couplings=rep["coupling"],
            coupling2=rep["coupling2"], weights=np.exp(rep["log_pi"]), stderr=stderr, theta=theta,
            theta_stderr=theta_err, vocabulary=None if vocab is None else vocab.ids, token_counts=counts)
        self.layout_, self.vocabulary_, self.theta_ = layout, vocab, theta
        self.n_states_, self.n_sites_ = layout.n_states, layout.n_sites
        if not success:
            warnings.warn(f"{type(self).__name__} did not converge: {message}", ConvergenceWarning, stacklevel=3)
        return self

    # ------------------------------------------------------------------ public API
    def fit(self, states, tokens=None, mask=None, lengths=None, *, n_states: int | None = None, sample_weight=None,
            init=None) -> ConditionalChain:
        """Fit to state sequences (n_sequences, n_sites) given their token ids; returns ``self``.

        ``init``: a fitted :class:`ConditionalChain` (or its result, or a dict of ``position``,
        ``token``, ``coupling``, ``coupling2``) fitted on the same training data, e.g. the previous
        model of a nested sequence (warm start).
        """
        data, vocab, rows, weights = self._prepare(states, tokens, mask, lengths, n_states, sample_weight)
        layout = _layout_for(self.position, self.couplings, self.max_range, data.chain.n_sites, data.chain.n_states,
                             vocab)
        objective = CRFObjective(data, rows, layout, self.l2, weights)
        start = _start(data, rows, layout, weights)
        if init is not None:
            params = _init_params(init, layout, vocab)
            if layout.n_token_rows and not params["has_token"]:  # a model without tokens: add their rates
                params["token"] = start["token"]
            start = params
        x0 = layout.project(start)
        pre = CRFPreconditioner(data, rows, layout, self.l2, weights)
        theta, success, message, n_iter, value = minimize(objective, pre, x0, self.max_iter, self.tol)
        self._finish(objective, theta, vocab, success=success, message=message, n_iter=n_iter, value=value)
        self.position_fields_ = self.result_.position_fields[0]
        self.token_fields_ = self.result_.token_fields[0]
        self.couplings_ = self.result_.couplings[0]
        self.coupling2_ = float(self.result_.coupling2[0])
        return self

    def _check_fitted(self):
        if not hasattr(self, "result_"):
            raise InvalidParameterError(f"this {type(self).__name__} is not fitted yet: call fit(states, tokens) first")

    def _query_data(self, states, tokens, mask, lengths):
        """New sequences as ``(ConditionalData, token-table rows)`` of the fitted layout."""
        self._check_fitted()
        data = ConditionalData.from_arrays(states, tokens, mask, lengths, self.n_states_)
        if data.chain.n_sites > self.n_sites_:
            raise InvalidParameterError(f"sequences of {data.chain.n_sites} positions, the fit has {self.n_sites_}")
        if self.vocabulary_ is not None:
            if data.tokens is None:
                raise InvalidParameterError("this model has token fields: pass the sequences' tokens")
            rows = self.vocabulary_.rows(data.tokens)
        else:
            rows = np.zeros(data.chain.states.shape, np.int64)
        return data, rows

    def _objective_for(self, states, tokens, mask, lengths) -> CRFObjective:
        # shorter arrays need no padding: the layout's tables cover every site
        return CRFObjective(*self._query_data(states, tokens, mask, lengths), self.layout_, self.l2)

    def log_likelihood(self, states, tokens=None, mask=None, lengths=None) -> np.ndarray:
        """Exact ``log P(observed states | tokens)`` of every sequence (hidden sites summed), shape (S,)."""
        objective = self._objective_for(states, tokens, mask, lengths)
        ll, _, _ = objective.log_likelihoods(self.theta_)
        log_pi = self.layout_.expand(self.theta_)["log_pi"]
        top = (ll + log_pi).max(axis=1, keepdims=True)
        return (top + np.log(np.exp(ll + log_pi - top).sum(axis=1, keepdims=True)))[:, 0]

    def score(self, states, tokens=None, mask=None, lengths=None) -> float:
        """Mean log-likelihood per observed token (held-out data: the test score)."""
        objective = self._objective_for(states, tokens, mask, lengths)
        return float(objective.log_likelihoods(self.theta_)[1] / objective.n_tokens)


def _reported_stderr(layout: CRFLayout, cov: np.ndarray, counts) -> dict:
    """Standard errors of the reported parameters: they are linear in ``theta`` (expansion and the
    gauge move), so ``var = diag(A cov A^T)`` with ``A`` their Jacobian. Mixtures add ``bias`` (K, q)
    (each component's mean position field minus the components' average) and ``weights`` (K,)
    (delta method through the softmax)."""
    keys = ("position", "token", "coupling", "coupling2")

    def flat(theta):
        rep = layout.reported(layout.expand(theta), counts)
        mean = rep["position"].mean(axis=1)
        return np.concatenate([rep[k].ravel() for k in keys] + [(mean - mean.mean(axis=0)).ravel()])

    theta0 = np.zeros(layout.n_params)
    base = flat(theta0)
    jac = np.stack([flat(np.eye(layout.n_params)[k]) - base for k in range(layout.n_params)], axis=1)
    sd = np.sqrt(np.clip(np.einsum("ik,kl,il->i", jac, cov, jac), 0, None))
    shapes = layout.reported(layout.expand(theta0), counts)
    shapes["bias"] = shapes["position"][:, 0]
    out, start = {}, 0
    for key in keys + ("bias",):
        size = shapes[key].size
        out[key] = sd[start: start + size].reshape(shapes[key].shape)
        start += size
    if layout.n_components == 1:
        out.pop("bias")
    return out


def _weights_stderr(layout: CRFLayout, theta, cov) -> np.ndarray:
    """Errors of ``pi = softmax(0, z)`` by the delta method."""
    pi = np.exp(layout.expand(theta)["log_pi"])
    sl = layout.logit_slot
    jac = (np.diag(pi) - np.outer(pi, pi))[:, 1:]
    return np.sqrt(np.clip(np.einsum("km,mn,kn->k", jac, cov[sl, sl], jac), 0, None))
