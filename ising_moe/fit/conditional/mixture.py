"""Sequence-level latent: finite mixtures of (conditional) chains, exact likelihood.

Every sequence is drawn from one of ``K`` components, ``P(x | t) = sum_k pi_k p_k(x | t)`` with
``p_k`` a conditional chain (:mod:`~ising_moe.fit.conditional`; ``token_rows=0`` gives plain
chains). Within a component the chain has short-range correlations only; across sequences the
component is shared by all positions, which produces a plateau of the position-averaged ``C(r)``
(between-sequence variance of the expert rates) that no chain with local couplings can.

What differs between components (``vary``): ``"bias"`` a homogeneous field offset per component
(one "topic" vector of expert preferences; everything else shared), ``"couplings"`` the offset and
the couplings (topics that differ in how strongly neighbours agree), ``"fields"`` the position and
token fields (couplings shared), ``"all"`` every parameter.

Fit: the exact log-likelihood ``sum_s log sum_k pi_k p_k(x_s)`` is maximised directly by L-BFGS
with the exact gradient (responsibility-weighted data minus model moments: the gradient EM
follows, without its slow outer loop), from ``n_init`` starts: the one-component fit plus
component offsets from a mixture of multinomials on the sequences' expert histograms, drawn with
``rng``. The best penalised likelihood is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from ..._util import RngLike, as_generator, as_int
from ...errors import InvalidParameterError
from .model import ConditionalChain, _init_params, _layout_for, _start
from .objective import CRFObjective, CRFPreconditioner, minimize

__all__ = ["ChainMixture", "ComponentSummary", "NComponentsSelection", "select_n_components"]


def _histogram_mixture(hist: np.ndarray, n_components: int, gen, n_iter: int = 100) -> np.ndarray:
    """Responsibilities (S, K) of a mixture of multinomials on per-sequence state counts (EM from
    random Dirichlet responsibilities): a cheap, rough start for the chain mixture."""
    resp = gen.dirichlet(np.ones(n_components), size=hist.shape[0])
    for _ in range(n_iter):
        theta = resp.T @ hist + 0.5
        log_theta = np.log(theta / theta.sum(axis=1, keepdims=True))
        log_pi = np.log(resp.mean(axis=0) + 1e-12)
        joint = hist @ log_theta.T + log_pi
        new = np.exp(joint - logsumexp(joint, axis=1, keepdims=True))
        if np.abs(new - resp).max() < 1e-8:
            resp = new
            break
        resp = new
    return resp


class ChainMixture(ConditionalChain):
    """Mixture of ``n_components`` conditional chains fitted by exact maximum likelihood (MAP).

    Parameters
    ----------
    n_components : int, default 2
    vary : {"bias", "couplings", "fields", "all"}, default "bias"
    position, couplings, token_rows, max_range, l2, max_iter, tol, standard_errors
        As for :class:`~ising_moe.fit.conditional.ConditionalChain` (``l2`` also on the logits of
        ``pi``).
    n_init : int, default 3
        Starts (the best penalised likelihood is kept).
    rng : int, Generator or None
        Draws the starts.

    Attributes
    ----------
    weights_ : ndarray, shape (K,)
        ``pi_k``.
    position_fields_ : ndarray, shape (K, n_sites, q)
    token_fields_ : ndarray, shape (K, token_rows, q)
    couplings_ : ndarray, shape (K, q, q)
    coupling2_ : ndarray, shape (K,)
    biases_ : ndarray, shape (K, q)
        Each component's mean position field minus the components' average (zero-sum rows).
    start_objectives_ : ndarray, shape (n_init,)
        Final penalised objective per token of every start.
    result_ : ConditionalFitResult
    """

    _method = "mixture-ml"

    def __init__(self, n_components: int = 2, vary: str = "bias", position: str = "position",
                 couplings: str = "potts", token_rows: int = 1000, max_range: int = 1, l2: float = 0.1,
                 max_iter: int = 2000, tol: float = 1e-5, standard_errors: bool = False, n_init: int = 3,
                 rng: RngLike = None):
        super().__init__(position=position, couplings=couplings, token_rows=token_rows, max_range=max_range, l2=l2,
                         max_iter=max_iter, tol=tol, standard_errors=standard_errors)
        self.n_components = n_components
        self.vary = vary
        self.n_init = n_init
        self.rng = rng

    def get_params(self) -> dict:
        return {**super().get_params(), "n_components": self.n_components, "vary": self.vary,
                "n_init": self.n_init, "rng": self.rng}

    def fit(self, states, tokens=None, mask=None, lengths=None, *, n_states: int | None = None, sample_weight=None,
            init=None) -> ChainMixture:
        """Fit to state sequences given their token ids; returns ``self``.

        ``init``: a fitted one-component :class:`ConditionalChain` (or mixture) on the same training
        data to start from (e.g. the previous model of a nested sequence); default: fitted here.
        """
        n_comp = as_int(self.n_components, "n_components", minimum=1)
        n_init = as_int(self.n_init, "n_init", minimum=1)
        gen = as_generator(self.rng)
        data, vocab, rows, weights = self._prepare(states, tokens, mask, lengths, n_states, sample_weight)
        chain = data.chain
        layout = _layout_for(self.position, self.couplings, self.max_range, chain.n_sites, chain.n_states, vocab,
                             n_comp, self.vary)
        if init is None:
            base = ConditionalChain(**{k: v for k, v in super().get_params().items() if k != "standard_errors"})
            base.fit(chain, data.tokens, sample_weight=weights)
            init = base
        start = _init_params(init, layout, vocab)
        if layout.n_token_rows and not start["has_token"]:
            start["token"] = _start(data, rows, layout, weights)["token"]
        q = chain.n_states
        hist = np.zeros((data.n_sequences, q))
        np.add.at(hist, (np.nonzero(chain.observed)[0], chain.states[chain.observed]), 1.0)
        objective = CRFObjective(data, rows, layout, self.l2, weights)
        pre = CRFPreconditioner(data, rows, layout, self.l2, weights)
        # a mixture with as many components is continued as it is (one start); otherwise the starts
        # add histogram-mixture offsets to the given (or one-component) parameters
        same_k = len(np.atleast_1d(start.get("log_pi", [0.0]))) == n_comp and n_comp > 1
        best, finals = None, []
        for _ in range(1 if same_k else n_init):
            x0 = layout.project(start) if same_k else self._start(start, hist, weights, layout, gen)
            theta, success, message, n_iter, value = minimize(objective, pre, x0, self.max_iter, self.tol)
            finals.append(value)
            if best is None or value < best[0]:
                best = (value, theta, success, message, n_iter)
        value, theta, success, message, n_iter = best
        self._finish(objective, theta, vocab, success=success, message=message, n_iter=n_iter, value=value)
        res = self.result_
        self.weights_ = res.weights
        self.position_fields_, self.token_fields_ = res.position_fields, res.token_fields
        self.couplings_, self.coupling2_ = res.couplings, res.coupling2
        mean_fields = res.position_fields.mean(axis=1)
        self.biases_ = mean_fields - mean_fields.mean(axis=0)
        self.start_objectives_ = np.array(finals)
        return self

    @staticmethod
    def _start(base: dict, hist, weights, layout, gen) -> np.ndarray:
        """Base parameters in every component plus offsets ``log(rate_k / rate)`` of a histogram mixture."""
        n_comp = layout.n_components
        resp = _histogram_mixture(hist, n_comp, gen) if n_comp > 1 else np.ones((hist.shape[0], 1))
        resp_w = resp * weights[:, None]
        rate_k = resp_w.T @ hist + 0.5
        rate_k /= rate_k.sum(axis=1, keepdims=True)
        rate = (weights @ hist + 0.5) / (weights @ hist + 0.5).sum()
        offset = np.log(rate_k) - np.log(rate)
        offset -= offset.mean(axis=1, keepdims=True)
        params = dict(base)
        pos = np.asarray(params["position"], dtype=float)
        params["position"] = pos[:1] + offset[:, None, :] if pos.shape[0] == 1 else pos + offset[:, None, :]
        pi = resp_w.sum(axis=0) + 1.0
        params["log_pi"] = np.log(pi / pi.sum())
        return layout.project(params)

    def predict_proba(self, states, tokens=None, mask=None, lengths=None) -> np.ndarray:
        """Posterior component probabilities (responsibilities) of every sequence, shape (S, K)."""
        objective = self._objective_for(states, tokens, mask, lengths)
        ll, _, _ = objective.log_likelihoods(self.theta_)
        joint = ll + np.log(self.weights_)
        return np.exp(joint - logsumexp(joint, axis=1, keepdims=True))

    def predict(self, states, tokens=None, mask=None, lengths=None) -> np.ndarray:
        """Most probable component of every sequence, shape (S,)."""
        return np.argmax(self.predict_proba(states, tokens, mask, lengths), axis=1)

    def describe(self, states, tokens=None, mask=None, lengths=None, labels=None) -> ComponentSummary:
        """What distinguishes the components: expert rates under the responsibilities, and a
        cross-tabulation with sequence ``labels`` (document ids, genres) when given."""
        resp = self.predict_proba(states, tokens, mask, lengths)
        x = np.asarray(states)
        m = np.ones(x.shape, bool) if mask is None else np.asarray(mask, bool)
        q = self.n_states_
        hist = np.zeros((x.shape[0], q))
        np.add.at(hist, (np.nonzero(m)[0], x[m]), 1.0)
        rates = (resp.T @ hist + 0.5) / (resp.T @ hist + 0.5).sum(axis=1, keepdims=True)
        overall = (hist.sum(axis=0) + 0.5) / (hist.sum() + 0.5 * q)
        table = names = nmi = None
        if labels is not None:
            lab = np.asarray(labels)
            if lab.shape != (x.shape[0],):
                raise InvalidParameterError(f"labels must have one entry per sequence ({x.shape[0]}), got {lab.shape}")
            names, idx = np.unique(lab, return_inverse=True)
            table = np.zeros((len(names), resp.shape[1]))
            np.add.at(table, idx, resp)
            nmi = _normalised_mutual_information(table)
        return ComponentSummary(weights=self.weights_, responsibilities=resp, expert_rates=rates,
                                log_rate_ratio=np.log(rates / overall), labels=names, crosstab=table,
                                normalised_mutual_information=nmi)


def _normalised_mutual_information(table: np.ndarray) -> float:
    """``I(label; component) / min(H(label), H(component))`` of a contingency table (0..1)."""
    p = table / table.sum()
    pl, pc = p.sum(axis=1), p.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mi = np.nansum(p * np.log(p / np.outer(pl, pc)))
        h = min(-np.nansum(pl * np.log(pl)), -np.nansum(pc * np.log(pc)))
    return float(mi / h) if h > 0 else math.nan


@dataclass(frozen=True, eq=False)
class ComponentSummary:
    """What distinguishes the components of a :class:`ChainMixture` (see :meth:`ChainMixture.describe`).

    Attributes
    ----------
    weights : ndarray, shape (K,)
    responsibilities : ndarray, shape (S, K)
    expert_rates : ndarray, shape (K, q)
        Expert frequencies of each component's sequences (responsibility-weighted).
    log_rate_ratio : ndarray, shape (K, q)
        ``log(rate_k / overall rate)``: which experts a component prefers.
    labels : ndarray or None
        Distinct sequence labels.
    crosstab : ndarray, shape (n_labels, K), or None
        Sum of responsibilities per label and component.
    normalised_mutual_information : float or None
        ``I(label; component) / min(H(label), H(component))`` of the cross-tabulation.
    """

    weights: np.ndarray
    responsibilities: np.ndarray
    expert_rates: np.ndarray
    log_rate_ratio: np.ndarray
    labels: np.ndarray | None
    crosstab: np.ndarray | None
    normalised_mutual_information: float | None


@dataclass(frozen=True, eq=False)
class NComponentsSelection:
    """Held-out choice of the number of components (:func:`select_n_components`).

    Attributes
    ----------
    candidates : ndarray of int
    heldout : ndarray
        Test log-likelihood per token of each candidate.
    gain, gain_error : ndarray
        Paired (over test sequences) difference to the best candidate per token, and its error.
    chosen : int
        Smallest candidate whose held-out likelihood is within ``threshold`` errors of the best.
    fits : list of ChainMixture
    """

    candidates: np.ndarray
    heldout: np.ndarray
    gain: np.ndarray
    gain_error: np.ndarray
    chosen: int
    fits: list


def select_n_components(states, tokens=None, mask=None, lengths=None, *, candidates=(1, 2, 3, 4),
                        test_fraction: float = 0.3, threshold: float = 2.0, rng: RngLike = None,
                        **mixture_params) -> NComponentsSelection:
    """Fit a :class:`ChainMixture` for every candidate ``K`` on training sequences and choose ``K``
    by the held-out log-likelihood: the smallest ``K`` not below the best by more than ``threshold``
    paired standard errors."""
    gen = as_generator(rng)
    x = np.asarray(states)
    n_seq = x.shape[0]
    if not 0 < test_fraction < 1:
        raise InvalidParameterError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_test = max(2, round(test_fraction * n_seq))
    order = gen.permutation(n_seq)
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])

    def take(a, rows):
        return None if a is None else np.asarray(a)[rows]

    fits, per_seq = [], []
    base = None
    for k in candidates:
        k = as_int(k, "number of components", minimum=1)
        model = ChainMixture(n_components=k, rng=gen, **mixture_params)
        model.fit(x[train], take(tokens, train), take(mask, train), take(lengths, train), init=base)
        if k == 1:
            base = model
        fits.append(model)
        per_seq.append(model.log_likelihood(x[test], take(tokens, test), take(mask, test), take(lengths, test)))
    per_seq = np.array(per_seq)
    m = np.ones(x.shape, bool) if mask is None else np.asarray(mask, bool)
    n_tok = m[test].sum()
    heldout = per_seq.sum(axis=1) / n_tok
    best = int(np.argmax(heldout))
    diff = per_seq - per_seq[best]
    gain = diff.sum(axis=1) / n_tok
    err = np.sqrt(len(test)) * diff.std(axis=1, ddof=1) / n_tok
    ok = gain >= -threshold * np.maximum(err, 1e-300)
    chosen = int(np.asarray(candidates)[np.flatnonzero(ok)[0]])
    return NComponentsSelection(np.asarray(candidates), heldout, gain, err, chosen, fits)
