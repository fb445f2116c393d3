"""A hidden topic that moves along the text: the joint chain of (topic, expert) given the tokens.

Every position ``i`` carries a hidden topic ``z_i in {0..K-1}`` beside its expert ``s_i``. Given the
tokens ``t``, the pair chain ``(z_i, s_i)`` is a **random field** (a linear-chain CRF over ``K q``
joint states, like :class:`~ising_moe.fit.conditional.ConditionalChain`):

.. math::

    P(z, s | t) = \\frac{1}{Z(t)} \\exp\\Big(\\sum_i \\big[h_{z_i}(i, s_i) - \\log \\sum_a e^{h_{z_i}(i, a)}
        + w_{z_i}\\big] + \\sum_i \\big[J(s_i, s_{i+1}) + \\kappa\\, \\delta_{z_i z_{i+1}}\\big]\\Big),
    \\qquad h_z(i, s) = P(i, s) + b_z(s) + T(t_i, s),

with position fields ``P``, token fields ``T`` and couplings ``J`` shared by the topics (as in
``ChainMixture(vary="bias")``), a homogeneous expert bias ``b_z`` per topic (zero-sum over topics and
experts), a topic field ``w_z`` and the **stay weight** ``kappa``. Every topic's site fields are
normalised per site: without it the field would favour, a priori, the topic whose expert
distribution is broadest (its partition function), by a factor exponential in the length; with it,
at ``J = 0`` the topics' prior given the tokens is exactly the Markov field of ``kappa`` and ``w``. The likelihood of the experts is
``P(s | t) = Z_s(t) / Z(t)``, both exact by the product-state forward-backward of
:mod:`ising_moe.exact.product` (``Z``: ``K q`` states with the Kronecker transition
``exp(kappa delta) (x) exp(J)``; ``Z_s``: the topics with the experts clamped). Its gradient is
the clamped minus the free expected statistics; the fit is L-BFGS on the exact MAP objective
(the gradient EM follows) from ``n_init`` starts.

Limits: ``K = 1`` is :class:`ConditionalChain`; ``kappa -> infinity`` freezes the topic along a
sequence, a mixture whose component weights are ``pi_k C_k(t) / sum_j pi_j C_j(t)`` with ``C_k`` the
ratio of topic ``k``'s chain partition function to its independent-site one (1 at ``J = 0``;
:class:`ChainMixture` uses ``pi_k`` itself, so the two agree up to that reweighting);
``kappa = 0`` with ``w`` gives independent per-token topics. Because the field is normalised once
for the whole sequence, ``kappa`` is **not** the switching probability: the **marginal switching
rate** ``rho = sum_i P(z_i != z_{i+1} | t) / n_bonds`` and the **topic persistence length**
``xi_topic`` (decay length of the exact topic autocorrelation
``C_z(r) = mean_i sum_k [P(z_i = k, z_{i+r} = k) - P(z_i = k) P(z_{i+r} = k)]``, least-squares
slope of ``log C_z`` over ``r >= 1`` where ``C_z(r) >= 1e-3 C_z(0)``) are computed from the fitted
model on given token sequences.

Label switching: topics are reported in decreasing order of their share on the training data.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import numpy as np

from ..._util import RngLike, as_generator, as_int
from ...errors import ConvergenceWarning, InvalidParameterError
from ...exact import product as PR
from ...exact.solver import decay_length
from .mixture import ChainMixture
from .model import ConditionalChain, _init_params, _layout_for, _start
from .objective import CRFPreconditioner, minimize
from .params import ConditionalData, CRFLayout

__all__ = ["NTopicsSelection", "TopicChain", "TopicObjective", "TopicStatistics", "select_n_topics"]

#: share of C_z(0) below which C_z(r) is not used for the decay length
_DECAY_FLOOR = 1e-3


class TopicObjective:
    """Exact negative log-posterior per token of a topic chain, and its gradient.

    ``theta = [layout parameters (K components, vary="bias"), kappa]``: the layout's ``log_pi`` is
    the topic field ``w`` (a per-site log weight, not a mixture weight).

    Parameters
    ----------
    data : ConditionalData
    rows : ndarray of int64, shape (n_sequences, n_sites)
    layout : CRFLayout
    l2 : float
    weights : ndarray, shape (n_sequences,), optional
    """

    def __init__(self, data: ConditionalData, rows, layout: CRFLayout, l2: float, weights=None):
        if layout.max_range != 1 or layout.vary != "bias":
            raise InvalidParameterError("a topic chain has nearest-neighbour couplings and per-topic biases only")
        self.data, self.layout, self.l2 = data, layout, float(l2)
        self.rows = np.ascontiguousarray(rows, dtype=np.int64)
        chain = data.chain
        n_seq = data.n_sequences
        self.weights = np.ones(n_seq) if weights is None else np.ascontiguousarray(weights, dtype=float)
        self.n_tokens = float(self.weights @ chain.observed.sum(axis=1))
        self.n_params = layout.n_params + 1
        self.n_evaluations = 0
        q = layout.n_states
        states, obs = chain.states, chain.observed
        self.n_rows = max(layout.n_token_rows, 1)
        # sequences without hidden sites: with the experts clamped, the joint chain is a K-state chain
        # of topics (the couplings between observed experts are a constant), and the clamped
        # statistics of the shared fields are data counts
        self._full = np.flatnonzero(~data.holes)
        self._holes = np.flatnonzero(data.holes)
        full = ~data.holes
        m = obs & full[:, None]
        w_site = np.broadcast_to(self.weights[:, None], obs.shape)
        self._data_tok = np.zeros((self.n_rows, q))
        np.add.at(self._data_tok, (self.rows[m], states[m]), w_site[m])
        self._bond = obs[:, :-1] & obs[:, 1:]
        b = self._bond & full[:, None]
        self._data_pair = np.zeros((q, q))
        np.add.at(self._data_pair, (states[:, :-1][b], states[:, 1:][b]), w_site[:, 1:][b])
        # sequences with hidden sites: the joint chain with every observed site clamped
        self._clamp = np.ones((len(self._holes), chain.n_sites, q), bool)
        if len(self._holes):
            oh = obs[self._holes]
            self._clamp[oh] = False
            self._clamp[oh, states[self._holes][oh]] = True

    def unary(self, theta):
        """Log site potentials (N, L, K, q) of the free chain and the layout's parameters:
        ``u(i, z, s) = h(i, z, s) - log sum_s' exp h(i, z, s') + w_z`` with
        ``h = P(i, s) + b_z(s) + T(t_i, s)``."""
        lay = self.layout
        params = lay.expand(theta[:-1])
        tok = params["token"][0][self.rows]                       # (N, L, q)
        pos = params["position"][:, : self.data.chain.n_sites]    # (K, L, q)
        h = tok[:, :, None, :] + np.transpose(pos, (1, 0, 2))[None]
        top = h.max(axis=3, keepdims=True)
        h -= top + np.log(np.exp(h - top).sum(axis=3, keepdims=True))
        return h + params["log_pi"][None, None, :, None], params

    def transition(self, theta, params) -> PR.Transition:
        """``exp(kappa delta_{z z'}) (x) exp(J(s, s'))``."""
        k = self.layout.n_components
        return PR.Transition.kronecker(theta[-1] * np.eye(k), params["coupling"][0])

    def free_pass(self, theta, *, marginals=False, pairs=True, groups=False):
        """Forward-backward of the free joint chain (``log Z(t)``)."""
        u, params = self.unary(theta)
        n, L, k, q = u.shape
        return PR.forward_backward(u.reshape(n, L, k * q), self.transition(theta, params), self.data.chain.lengths,
                                   weights=self.weights, marginals=marginals, pairs=pairs,
                                   groups=self.rows if groups else None, n_groups=self.n_rows), u, params

    def clamped_topics(self, theta, u, params, *, marginals=True, pairs=True):
        """K-state topic chains of the sequences without hidden sites, experts clamped: the result
        (``log Z`` without the coupling constant) and the constant ``sum_i J(s_i, s_{i+1})``."""
        f = self._full
        x = self.data.chain.states[f]
        uc = np.take_along_axis(u[f], x[:, :, None, None], axis=3)[..., 0]
        k = self.layout.n_components
        res = PR.forward_backward(uc, PR.Transition.kronecker(theta[-1] * np.eye(k)), self.data.chain.lengths[f],
                                  weights=self.weights[f], marginals=marginals, pairs=pairs)
        jsum = (params["coupling"][0][x[:, :-1], x[:, 1:]] * self._bond[f]).sum(axis=1)
        return res, jsum

    def clamped_joint(self, theta, u, params, *, marginals=False, pairs=True, groups=False):
        """Joint chains of the sequences with hidden sites, observed experts clamped."""
        h = self._holes
        n, L, k, q = u.shape
        uc = np.where(self._clamp[:, :, None, :], u[h], -np.inf).reshape(len(h), L, k * q)
        return PR.forward_backward(uc, self.transition(theta, params), self.data.chain.lengths[h],
                                   weights=self.weights[h], marginals=marginals, pairs=pairs,
                                   groups=self.rows[h] if groups else None, n_groups=self.n_rows)

    def log_likelihoods(self, theta, want_grad: bool = False):
        """Per-sequence ``log P(s | t)`` (N,), their weighted total and, with ``want_grad``, the gradient."""
        lay = self.layout
        potts = lay.couplings != "full"   # the gradient needs the diagonals of the pair counts only
        pairs = ("diagonal" if potts else True) if want_grad else False
        free, u, params = self.free_pass(theta, pairs=pairs, groups=want_grad, marginals=want_grad)
        self.n_evaluations += 1
        n, L, k, q = u.shape
        log_zc = np.empty(n)
        f, h = self._full, self._holes
        if f.size:
            topics, jsum = self.clamped_topics(theta, u, params, marginals=want_grad,
                                               pairs="diagonal" if want_grad else False)
            log_zc[f] = topics.log_partition + jsum
        if h.size:
            joint = self.clamped_joint(theta, u, params, pairs=pairs, groups=want_grad, marginals=want_grad)
            log_zc[h] = joint.log_partition
        ll = log_zc - free.log_partition
        total = float(self.weights @ ll)
        if not want_grad:
            return ll, total, None
        # clamped minus free expected statistics
        site = -free.site_counts.reshape(L, k, q)
        tok = self._data_tok - free.group_counts.reshape(self.n_rows, k, q).sum(axis=1)
        def mat(p):  # a pair-count matrix, or its diagonal
            return np.diag(p) if np.ndim(p) == 1 else np.asarray(p)

        pair_s = self._data_pair - mat(free.pair_counts[1])
        g_kappa = -np.trace(mat(free.pair_counts[0]))
        if f.size:
            x = self.data.chain.states[f]
            pz = topics.marginals * self.weights[f][:, None, None]          # (nf, L, K)
            idx = ((np.arange(L)[None, :, None] * k + np.arange(k)[None, None, :]) * q + x[:, :, None])
            site += np.bincount(idx.ravel(), weights=pz.ravel(), minlength=L * k * q).reshape(L, k, q)
            g_kappa += np.trace(mat(topics.pair_counts[0]))
        if h.size:
            site += joint.site_counts.reshape(L, k, q)
            tok += joint.group_counts.reshape(self.n_rows, k, q).sum(axis=1)
            pair_s += mat(joint.pair_counts[1])
            g_kappa += np.trace(mat(joint.pair_counts[0]))
        # the per-site normaliser of every topic's fields: d u(i, z, s') / d h(i, z, s) = delta - p_iz(s),
        # so every field gradient loses p_iz(s) times the topic-marginal difference dz(i, z)
        dz = -free.factor_marginals(0)
        if f.size:
            dz[f] += topics.marginals
        if h.size:
            dz[h] += joint.factor_marginals(0)
        dz *= self.weights[:, None, None]
        corr = np.exp(u - params["log_pi"][None, None, :, None]) * dz[..., None]    # (N, L, K, q)
        site -= corr.sum(axis=0)
        corr_s = corr.sum(axis=2).reshape(n * L, q)
        flat_rows = self.rows.ravel()
        for a in range(q):
            tok[:, a] -= np.bincount(flat_rows, weights=corr_s[:, a], minlength=self.n_rows)
        g_pos = np.zeros((k, lay.n_sites, q))
        g_pos[:, :L] = np.transpose(site, (1, 0, 2))
        g_tok = np.zeros((k, params["token"].shape[1], q))
        g_tok[0] = tok
        g_pair = np.zeros((k, q, q))
        g_pair[0] = pair_s
        grad = lay.adjoint(g_pos, g_tok, g_pair, np.zeros(k), dz.sum(axis=(0, 1)))
        return ll, total, np.concatenate([grad, [g_kappa]])

    def __call__(self, theta):
        _, total, grad = self.log_likelihoods(theta, want_grad=True)
        # the layout's prior (as ConditionalChain's), plain L2 on kappa
        pen, pen_grad = self.layout.penalty(theta[:-1])
        value = -total + self.l2 * (pen + 0.5 * theta[-1] ** 2)
        return value / self.n_tokens, (-grad + self.l2 * np.append(pen_grad, theta[-1])) / self.n_tokens


class _TopicPreconditioner:
    """The CRF preconditioner of the layout's parameters and a scale for ``kappa``."""

    def __init__(self, base: CRFPreconditioner, kappa_scale: float):
        self.base, self.kappa_scale = base, float(kappa_scale)

    def to_theta(self, phi):
        return np.concatenate([self.base.to_theta(phi[:-1]), [phi[-1] * self.kappa_scale]])

    def to_phi(self, theta):
        return np.concatenate([self.base.to_phi(theta[:-1]), [theta[-1] / self.kappa_scale]])

    def grad_to_phi(self, grad):
        return np.concatenate([self.base.grad_to_phi(grad[:-1]), [grad[-1] * self.kappa_scale]])


@dataclass(frozen=True, eq=False)
class TopicStatistics:
    """What the fitted topic chain implies on given token sequences (:meth:`TopicChain.topic_statistics`).

    Attributes
    ----------
    switching_rate : float
        ``rho``: expected fraction of bonds with ``z_i != z_{i+1}`` given the tokens.
    occupancy : ndarray, shape (K,)
        Expected share of positions in each topic.
    autocorrelation : ndarray, shape (R + 1,)
        Exact ``C_z(r)``, averaged over the valid pairs ``(i, i + r)``.
    persistence_length : float
        ``xi_topic`` (NaN when not defined: see ``reason``).
    reason : str
        Why ``persistence_length`` is NaN ('' otherwise).
    """

    switching_rate: float
    occupancy: np.ndarray
    autocorrelation: np.ndarray
    persistence_length: float
    reason: str


class TopicChain(ConditionalChain):
    """Exact maximum-likelihood (MAP) chain of experts with a hidden, moving topic (module docstring).

    Parameters
    ----------
    n_topics : int, default 2
    position, couplings, token_rows, l2, max_iter, tol
        As for :class:`~ising_moe.fit.conditional.ConditionalChain` (``l2`` also on ``kappa``, the
        biases and the topic fields).
    n_init : int, default 3
        Starts: histogram-mixture topic biases (as in :class:`ChainMixture`) drawn with ``rng``, and
        stay weights from ``kappa_init`` in turn. The best penalised likelihood is kept.
    kappa_init : sequence of float, default (6.0, 3.0, 9.0)
    rng : int, Generator or None

    Attributes
    ----------
    stay_weight_ : float
        ``kappa``.
    topic_fields_ : ndarray, shape (K,)
        ``w_z`` (log weights, ``logsumexp`` = 0).
    biases_ : ndarray, shape (K, q)
        Each topic's expert bias minus the topics' average.
    position_fields_, token_fields_, couplings_
        Shared by the topics (reported gauge of :class:`ConditionalChain`).
    switching_rate_, occupancy_ : float, ndarray
        On the training sequences given their tokens.
    start_objectives_ : ndarray, shape (n_init,)
    result_ : ConditionalFitResult
        ``method = "topic-chain-ml"``; ``n_parameters`` includes ``kappa``; ``weights`` are the
        occupancies.
    """

    _method = "topic-chain-ml"

    def __init__(self, n_topics: int = 2, position: str = "position", couplings: str = "potts",
                 token_rows: int = 1000, l2: float = 0.1, max_iter: int = 2000, tol: float = 1e-5, n_init: int = 3,
                 kappa_init=(6.0, 3.0, 9.0), rng: RngLike = None):
        super().__init__(position=position, couplings=couplings, token_rows=token_rows, max_range=1, l2=l2,
                         max_iter=max_iter, tol=tol, standard_errors=False)
        self.n_topics = n_topics
        self.n_init = n_init
        self.kappa_init = kappa_init
        self.rng = rng

    def get_params(self) -> dict:
        base = {k: v for k, v in super().get_params().items() if k not in ("max_range", "standard_errors")}
        return {**base, "n_topics": self.n_topics, "n_init": self.n_init, "kappa_init": tuple(self.kappa_init),
                "rng": self.rng}

    # ------------------------------------------------------------------ fit
    def fit(self, states, tokens=None, mask=None, lengths=None, *, n_states: int | None = None, sample_weight=None,
            init=None) -> TopicChain:
        """Fit to state sequences given their token ids; returns ``self``.

        ``init``: a fitted :class:`ConditionalChain` on the same training data (the shared fields
        start there; default: fitted here), or a fitted :class:`TopicChain` with ``n_topics`` topics
        (continued from its parameters, one start).
        """
        k = as_int(self.n_topics, "n_topics", minimum=1)
        n_init = as_int(self.n_init, "n_init", minimum=1)
        kappas = np.atleast_1d(np.asarray(self.kappa_init, dtype=float))
        if kappas.size == 0 or not np.isfinite(kappas).all():
            raise InvalidParameterError(f"kappa_init must be finite numbers, got {self.kappa_init}")
        gen = as_generator(self.rng)
        data, vocab, rows, weights = self._prepare(states, tokens, mask, lengths, n_states, sample_weight)
        chain = data.chain
        layout = _layout_for(self.position, self.couplings, 1, chain.n_sites, chain.n_states, vocab, k, "bias")
        objective = TopicObjective(data, rows, layout, self.l2, weights)
        base_pre = CRFPreconditioner(data, rows, layout, self.l2, weights)
        n_bonds = float(weights @ np.maximum(chain.lengths - 1, 0))
        pre = _TopicPreconditioner(base_pre, 1.0 / math.sqrt((0.05 * n_bonds + max(self.l2, 1e-3))
                                                             / objective.n_tokens))
        continued = isinstance(init, TopicChain) and init.layout_.n_components == k
        if continued:
            same_rows = (init.vocabulary_ is None) == (vocab is None) and (
                vocab is None or np.array_equal(init.vocabulary_.ids, vocab.ids))
            params = init.layout_.expand(init.theta_) if same_rows else params_by_token(init, vocab)
            starts = [np.concatenate([layout.project(params), [init.stay_weight_]])]
        else:
            if isinstance(init, ConditionalChain) and init.vocabulary_ is not None and vocab is not None and (
                    not np.array_equal(init.vocabulary_.ids, vocab.ids)):
                init = params_by_token(init, vocab)   # fitted on other sequences: rows by token id
            if init is None:
                base = ConditionalChain(position=self.position, couplings=self.couplings, token_rows=self.token_rows,
                                        l2=self.l2, max_iter=self.max_iter, tol=self.tol)
                base.fit(chain, data.tokens, sample_weight=weights)
                init = base
            start = _init_params(init, layout, vocab)
            if layout.n_token_rows and not start["has_token"]:
                start["token"] = _start(data, rows, layout, weights)["token"]
            q = chain.n_states
            hist = np.zeros((data.n_sequences, q))
            np.add.at(hist, (np.nonzero(chain.observed)[0], chain.states[chain.observed]), 1.0)
            starts = [np.concatenate([ChainMixture._start(start, hist, weights, layout, gen),
                                      [kappas[j % kappas.size] if k > 1 else 0.0]])
                      for j in range(1 if k == 1 else n_init)]
        best, finals = None, []
        for x0 in starts:
            theta, success, message, n_iter, value = minimize(objective, pre, x0, self.max_iter, self.tol)
            finals.append(value)
            if best is None or value < best[0]:
                best = (value, theta, success, message, n_iter)
        value, theta, success, message, n_iter = best
        theta = self._sorted(objective, theta)
        value_base = value - 0.5 * self.l2 * theta[-1] ** 2 / objective.n_tokens
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # warned below with the right name
            self._finish(objective, theta[:-1], vocab, success=success, message=message, n_iter=n_iter,
                         value=value_base)
        self.stay_weight_ = float(theta[-1])
        self.theta_full_ = theta
        free, _, params = objective.free_pass(theta, pairs="diagonal")
        n_b = float(weights @ np.maximum(chain.lengths - 1, 0))
        self.switching_rate_ = float(1.0 - np.sum(free.pair_counts[0]) / n_b) if n_b > 0 else math.nan
        occ = free.site_counts.reshape(chain.n_sites, k, -1).sum(axis=(0, 2))
        self.occupancy_ = occ / occ.sum()
        res = self.result_
        n_par = layout.n_params + 1
        ll = res.log_likelihood
        self.result_ = replace(res, n_parameters=n_par, aic=2 * n_par - 2 * ll,
                               bic=n_par * math.log(max(res.n_tokens, 1.0)) - 2 * ll, weights=self.occupancy_)
        self.topic_fields_ = params["log_pi"]
        self.position_fields_ = res.position_fields.mean(axis=0)
        mean_fields = res.position_fields.mean(axis=1)
        self.biases_ = mean_fields - mean_fields.mean(axis=0)
        self.token_fields_ = res.token_fields[0]
        self.couplings_ = res.couplings[0]
        self.start_objectives_ = np.array(finals)
        if not success:
            warnings.warn(f"TopicChain did not converge: {message}", ConvergenceWarning, stacklevel=2)
        return self

    @staticmethod
    def _sorted(objective: TopicObjective, theta) -> np.ndarray:
        """The same model with topics in decreasing order of their training share (label switching)."""
        lay = objective.layout
        if lay.n_components == 1:
            return theta
        free, _, _ = objective.free_pass(theta, pairs=False)
        occ = free.site_counts.reshape(free.site_counts.shape[0], lay.n_components, -1).sum(axis=(0, 2))
        order = np.argsort(-occ, kind="stable")
        params = lay.expand(theta[:-1])
        params = {**params, "position": params["position"][order], "token": params["token"][order],
                  "log_pi": params["log_pi"][order]}
        return np.concatenate([lay.project(params), theta[-1:]])

    # ------------------------------------------------------------------ queries
    def _objective_for(self, states, tokens, mask, lengths) -> TopicObjective:
        return TopicObjective(*self._query_data(states, tokens, mask, lengths), self.layout_, self.l2)

    def _free_for(self, tokens, mask, lengths, n_sites=None):
        """Objective of token sequences alone (states irrelevant: all zero)."""
        src = tokens if tokens is not None else mask
        if src is None:
            if lengths is None or n_sites is None:
                raise InvalidParameterError("pass tokens or mask (or lengths and n_sites) to set the sequences")
            shape = (len(lengths), int(n_sites))
        else:
            shape = np.shape(src)
        return self._objective_for(np.zeros(shape, np.int64), tokens, mask, lengths)

    def log_likelihood(self, states, tokens=None, mask=None, lengths=None) -> np.ndarray:
        """Exact ``log P(observed states | tokens)`` of every sequence, shape (N,)."""
        return self._objective_for(states, tokens, mask, lengths).log_likelihoods(self.theta_full_)[0]

    def score(self, states, tokens=None, mask=None, lengths=None) -> float:
        """Mean log-likelihood per observed token."""
        obj = self._objective_for(states, tokens, mask, lengths)
        return float(obj.log_likelihoods(self.theta_full_)[1] / obj.n_tokens)

    def predict_proba(self, states, tokens=None, mask=None, lengths=None) -> np.ndarray:
        """Posterior topic ``P(z_i = k | s, t)`` at every position, shape (N, L, K) (zero past the length)."""
        obj = self._objective_for(states, tokens, mask, lengths)
        theta = self.theta_full_
        u, params = obj.unary(theta)
        n, L, k, _ = u.shape
        out = np.zeros((n, L, k))
        if obj._full.size:
            out[obj._full] = obj.clamped_topics(theta, u, params, pairs=False)[0].marginals
        if obj._holes.size:
            out[obj._holes] = obj.clamped_joint(theta, u, params, marginals=True, pairs=False).factor_marginals(0)
        return out

    def predict(self, states, tokens=None, mask=None, lengths=None) -> np.ndarray:
        """Most probable topic at every position (posterior marginal), shape (N, L); -1 past the length."""
        proba = self.predict_proba(states, tokens, mask, lengths)
        out = np.argmax(proba, axis=2)
        out[proba.sum(axis=2) == 0] = -1
        return out

    def sample(self, tokens=None, mask=None, lengths=None, *, n_sites: int | None = None, rng: RngLike = None):
        """Exact draws of (experts, topics) of every token sequence, each (N, L) (``-1`` past the length)."""
        obj = self._free_for(tokens, mask, lengths, n_sites)
        u, params = obj.unary(self.theta_full_)
        n, L, k, q = u.shape
        joint = PR.sample(u.reshape(n, L, k * q), obj.transition(self.theta_full_, params), obj.data.chain.lengths,
                          rng)
        both = PR.unravel(joint, (k, q))
        return both[..., 1], both[..., 0]

    def topic_statistics(self, tokens=None, mask=None, lengths=None, *, n_sites: int | None = None,
                         max_distance: int = 32) -> TopicStatistics:
        """Switching rate, occupancy, exact ``C_z(r)`` and ``xi_topic`` of the model on token sequences."""
        obj = self._free_for(tokens, mask, lengths, n_sites)
        theta = self.theta_full_
        u, params = obj.unary(theta)
        n, L, k, q = u.shape
        trans = obj.transition(theta, params)
        lens = obj.data.chain.lengths
        res = PR.forward_backward(u.reshape(n, L, k * q), trans, lens, marginals=True, pairs="diagonal")
        n_b = float(np.maximum(lens - 1, 0).sum())
        rho = float(1.0 - np.sum(res.pair_counts[0]) / n_b) if n_b > 0 else math.nan
        occ = res.site_counts.reshape(L, k, q).sum(axis=(0, 2))
        occ = occ / occ.sum()
        r_max = as_int(max_distance, "max_distance", 1, max(L - 1, 1))
        inside = np.arange(L)[None, :] < lens[:, None]
        if k == 1:
            return TopicStatistics(rho, occ, np.zeros(r_max + 1), math.nan, "one topic: no persistence length")
        joint = PR.two_point(u.reshape(n, L, k * q), trans, 0, r_max, lens, inside)  # (L, R+1, K, K)
        pz = res.factor_marginals(0)                                                  # (N, L, K)
        cz = np.full(r_max + 1, np.nan)
        for r in range(r_max + 1):
            both = inside[:, : L - r] & inside[:, r:]
            n_pairs = both.sum()
            if n_pairs == 0:
                continue
            same = np.trace(joint[: L - r, r], axis1=1, axis2=2).sum()
            prod = (np.einsum("nik,nik->ni", pz[:, : L - r], pz[:, r:]) * both).sum()
            cz[r] = (same - prod) / n_pairs
        xi, reason = math.nan, ""
        if not cz[0] > 1e-6:
            reason = "the topic does not vary given the tokens (C_z(0) ~ 0)"
        else:
            r = np.arange(1, r_max + 1)
            keep = np.isfinite(cz[1:]) & (cz[1:] >= _DECAY_FLOOR * cz[0])
            if keep.sum() < 2:
                reason = f"C_z(r) falls below {_DECAY_FLOOR:g} C_z(0) within 2 tokens (no persistence)"
            elif keep.all():
                xi = decay_length(r, cz[1:])
                if not xi < 10 * r_max:
                    xi, reason = math.nan, f"C_z(r) barely decays over r <= {r_max}: longer than the window"
            else:
                last = int(np.argmin(keep)) if not keep.all() else keep.size
                xi = decay_length(r[:last], cz[1: last + 1]) if last >= 2 else math.nan
                if not math.isfinite(xi):
                    reason = "C_z(r) does not decay exponentially"
        return TopicStatistics(rho, occ, cz, float(xi), reason)

    def model_correlation_function(self, tokens=None, mask=None, lengths=None, *, n_sites: int | None = None,
                                   max_distance: int = 32) -> np.ndarray:
        """Expectation of the empirical ``C(r)`` estimator on these sequences (as
        :func:`~ising_moe.fit.conditional.model_correlation_function`), shape (R + 1,)."""
        from .goodness import expected_estimator

        obj = self._free_for(tokens, mask, lengths, n_sites)
        theta = self.theta_full_
        u, params = obj.unary(theta)
        n, L, k, q = u.shape
        trans = obj.transition(theta, params)
        chain = obj.data.chain
        obs = chain.observed
        r_max = as_int(max_distance, "max_distance", 1, max(L - 1, 1))
        res = PR.forward_backward(u.reshape(n, L, k * q), trans, chain.lengths, marginals=True, pairs=False)
        ps = res.factor_marginals(1) * obs[:, :, None]                               # (N, L, q)
        joint = PR.two_point(u.reshape(n, L, k * q), trans, 1, r_max, chain.lengths, obs)
        a_sum = ps.sum(axis=0)
        s1 = np.zeros((L, r_max + 1))
        s2 = np.zeros((L, r_max + 1))
        for r in range(r_max + 1):
            s1[: L - r, r] = np.trace(joint[: L - r, r], axis1=1, axis2=2)
            s2[: L - r, r] = np.einsum("nia,nia->i", ps[:, : L - r], ps[:, r:])
        return expected_estimator(obs, a_sum, s1, s2, r_max)


def params_by_token(model, vocab) -> dict:
    """Parameters of a fitted chain with its token rows moved to the rows of ``vocab`` by token id
    (a warm start on other sequences, whose most frequent tokens differ in order); ids ``vocab``
    has and ``model`` has not get the pooled row's fields."""
    res = model.result_
    params = dict(res.params())
    tok = np.asarray(res.token_fields, dtype=float)                   # (K, R, q)
    if vocab is None or res.vocabulary is None:
        return params
    new = np.broadcast_to(tok[:, -1:, :], (tok.shape[0], vocab.n_rows, tok.shape[2])).copy()
    rows = vocab.rows(np.asarray(res.vocabulary, dtype=np.int64))
    hit = rows < len(vocab.ids)
    new[:, rows[hit]] = tok[:, : len(res.vocabulary)][:, hit]
    params["token"] = new
    if isinstance(model, TopicChain):
        params["log_pi"] = np.asarray(model.topic_fields_)   # result_.weights are the occupancies
    return params


@dataclass(frozen=True, eq=False)
class NTopicsSelection:
    """Held-out choice of the number of topics (:func:`select_n_topics`).

    Attributes
    ----------
    candidates : ndarray of int
        The ``K`` tried (extended upwards while the best was the largest).
    heldout : ndarray
        Validation log-likelihood per token [nats] of each candidate.
    gain, gain_error : ndarray
        Paired (over validation sequences) difference to ``K = candidates[0]`` per token, and its error.
    chosen : int
        Smallest ``K`` within ``threshold`` paired errors of the best.
    at_edge : bool
        ``chosen`` is the largest ``K`` tried (more topics may fit better).
    converged : ndarray of bool
    fits : list of TopicChain
    """

    candidates: np.ndarray
    heldout: np.ndarray
    gain: np.ndarray
    gain_error: np.ndarray
    chosen: int
    at_edge: bool
    converged: np.ndarray
    fits: list


def select_n_topics(states, tokens=None, mask=None, lengths=None, *, candidates=(1, 2, 3, 4), max_topics: int = 8,
                    test_fraction: float = 0.25, threshold: float = 2.0, n_states: int | None = None,
                    rng: RngLike = None, init=None, **params) -> NTopicsSelection:
    """Fit a :class:`TopicChain` for every candidate ``K`` on a share of the sequences and choose ``K``
    by the likelihood of the others: the smallest ``K`` not below the best by more than ``threshold``
    paired errors. While the best is the largest candidate, ``K + 1`` is added (up to
    ``max_topics``), so that the choice lies inside the range whenever it can.

    ``init``: a fitted :class:`ConditionalChain` to start the one-topic fit from; every ``K`` starts
    from the one-topic fit.
    """
    gen = as_generator(rng)
    x = np.asarray(states)
    n_seq = x.shape[0]
    if not 0 < test_fraction < 1:
        raise InvalidParameterError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_val = max(2, round(test_fraction * n_seq))
    if n_seq - n_val < 2:
        raise InvalidParameterError(f"{n_seq} sequences are too few to choose the number of topics")
    order = gen.permutation(n_seq)
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])

    def take(a, rows):
        return None if a is None else np.asarray(a)[rows]

    fit_args = (x[train], take(tokens, train), take(mask, train), take(lengths, train))
    val_args = (x[val], take(tokens, val), take(mask, val), take(lengths, val))
    m = np.ones(x.shape, bool) if mask is None else np.asarray(mask, bool)
    n_tok = max(int(m[val].sum()), 1)
    tried = [as_int(kk, "number of topics", minimum=1) for kk in sorted(set(candidates))]
    max_topics = as_int(max_topics, "max_topics", minimum=max(tried))
    fits, per_seq, base = [], [], None
    j = 0
    while j < len(tried):
        kk = tried[j]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = TopicChain(n_topics=kk, rng=gen, **params).fit(*fit_args, n_states=n_states,
                                                                    init=base if base is not None else init)
        if base is None and kk == 1:
            base = model
        fits.append(model)
        per_seq.append(model.log_likelihood(*val_args))
        j += 1
        if j == len(tried):
            best = int(np.argmax([p.sum() for p in per_seq]))
            if best == len(tried) - 1 and tried[-1] < max_topics:
                tried.append(tried[-1] + 1)
    per_seq = np.array(per_seq)
    heldout = per_seq.sum(axis=1) / n_tok
    best = int(np.argmax(heldout))
    diff_best = per_seq - per_seq[best]
    err_best = np.sqrt(n_val) * diff_best.std(axis=1, ddof=1) / n_tok
    ok = diff_best.sum(axis=1) / n_tok >= -threshold * np.maximum(err_best, 1e-300)
    chosen_idx = int(np.flatnonzero(ok)[0])
    diff0 = per_seq - per_seq[0]
    return NTopicsSelection(candidates=np.array(tried), heldout=heldout, gain=diff0.sum(axis=1) / n_tok,
                            gain_error=np.sqrt(n_val) * diff0.std(axis=1, ddof=1) / n_tok,
                            chosen=tried[chosen_idx], at_edge=bool(chosen_idx == len(tried) - 1 and len(tried) > 1),
                            converged=np.array([f.result_.success for f in fits]), fits=fits)
