"""The topic-chain row of the decomposition: a hidden topic that moves along the text.

On the decomposition's training sequences, the number of topics ``K`` is chosen by the likelihood of
a validation share of them (:func:`~ising_moe.fit.conditional.topic_chain.select_n_topics`, the range
extended while the best is its largest value); the chosen :class:`~ising_moe.fit.conditional.TopicChain`
is refitted on all training sequences (warm from ``+couplings``) and scored on the test sequences.
Reported: the held-out gain over ``+couplings`` and over ``+sequence latent`` (bits/token, paired over
test sequences), the model's marginal switching rate and topic persistence length ``xi_topic`` on
the test sequences' tokens with bootstrap errors (refits on resampled training sequences, warm
started), the exact ``C(r)`` of the topic chain against the test sequences', and the posterior topic
along a few test sequences (for the figure).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ...errors import ConvergenceWarning, SparseDataWarning

log = logging.getLogger(__name__)

__all__ = ["TopicRow", "fit_topic_row"]

_LN2 = math.log(2)


@dataclass(frozen=True, eq=False)
class TopicRow:
    """The topic chain of one layer (see the module docstring).

    Attributes
    ----------
    n_topics : int
        Chosen ``K`` (1: no topic structure).
    candidates, validation_gain, validation_gain_error : ndarray
        ``K`` tried and their validation gain over ``K = 1`` [bits/token].
    at_edge : bool
        ``n_topics`` is the largest ``K`` tried.
    converged : bool
    gain, gain_error : float
        Held-out gain over ``+couplings`` [bits/token].
    gain_latent, gain_latent_error : float
        Held-out gain over ``+sequence latent`` (NaN when that row is missing).
    heldout : float
        Held-out log2-likelihood per token.
    stay_weight : float
        ``kappa`` (not a probability: the field is normalised over whole sequences).
    switching_rate, switching_rate_error : float
        Marginal rate of topic changes per bond on the test sequences' tokens.
    persistence_length, persistence_length_error : float
        ``xi_topic`` [tokens] (NaN with ``persistence_reason``).
    persistence_reason : str
    autocorrelation : ndarray
        Exact ``C_z(r)``, ``r = 0..R``.
    occupancy : ndarray, shape (K,)
    biases : ndarray, shape (K, q)
    n_bootstrap : int
        Refits behind the errors (that converged).
    gof : dict
        The topic chain's exact ``C(r)`` against the test sequences' (as the decomposition's ``gof``).
    posterior : ndarray, shape (n_show, L, K)
        Posterior topic along the first test sequences; ``posterior_rows`` their rows in the data,
        ``posterior_tokens`` their token ids.
    message : str
    seconds : float
    """

    n_topics: int
    candidates: np.ndarray
    validation_gain: np.ndarray
    validation_gain_error: np.ndarray
    at_edge: bool
    converged: bool
    gain: float
    gain_error: float
    gain_latent: float
    gain_latent_error: float
    heldout: float
    stay_weight: float
    switching_rate: float
    switching_rate_error: float
    persistence_length: float
    persistence_length_error: float
    persistence_reason: str
    autocorrelation: np.ndarray
    occupancy: np.ndarray
    biases: np.ndarray
    n_bootstrap: int
    gof: dict
    posterior: np.ndarray = field(repr=False)
    posterior_rows: np.ndarray = field(repr=False)
    posterior_tokens: np.ndarray = field(repr=False)
    message: str = ""
    seconds: float = math.nan

    def sentence(self) -> str:
        """What the topic chain adds, its K and xi_topic (or why they are not printed)."""
        from ...report.measure import fmt_pm

        if not self.converged:
            return f"topic chain (K = {self.n_topics}): not converged, not reported ({self.message})"
        edge = ", the largest tried: more may fit better" if self.at_edge else ""
        if self.n_topics == 1:
            return (f"topic chain: K = 1 chosen by held-out likelihood (of {_krange(self.candidates)}{edge}): "
                    "no moving topic, no persistence length")
        text = (f"moving topic (K = {self.n_topics} of {_krange(self.candidates)}{edge}) adds "
                f"{fmt_pm(self.gain, self.gain_error, 2)} bits/token over the neighbours")
        if math.isfinite(self.gain_latent):
            text += f" ({fmt_pm(self.gain_latent, self.gain_latent_error, 2)} over the sequence topic)"
        if math.isfinite(self.persistence_length):
            err = self.persistence_length_error
            xi = (f"{self.persistence_length:.1f} ± {err:.1f}" if math.isfinite(err)
                  else f"{self.persistence_length:.1f} (no error: bootstrap failed)")
            text += f"; a routing topic lasts xi_topic = {xi} tokens"
        else:
            text += f"; xi_topic n/a ({self.persistence_reason})"
        if math.isfinite(self.switching_rate):
            text += f", switching rate {fmt_pm(self.switching_rate, self.switching_rate_error, 2)} per token"
        return text


def _krange(c) -> str:
    c = [int(v) for v in c]
    return f"K = {c[0]}..{c[-1]}" if len(c) > 1 else f"K = {c[0]}"


def _paired(new, old, n_tokens):
    d = (new - old) / _LN2
    err = float(math.sqrt(len(d)) * d.std(ddof=1) / n_tokens) if len(d) > 1 else math.nan
    return float(d.sum() / n_tokens), err


def fit_topic_row(train, test, n_states: int, *, base, reference_ll, latent_ll=None, seed: int = 0,
                  token_rows: int = 1000, candidates=(1, 2, 3), max_topics: int = 6, n_bootstrap: int = 3,
                  max_distance: int = 32, gof_distance: int = 64, n_show: int = 3, tol: float = 1e-4,
                  select_tol: float = 1e-3, n_init: int = 2) -> TopicRow:
    """Fit and report the topic-chain row of one layer.

    Parameters
    ----------
    train, test : tuple
        ``(states, tokens, mask, lengths)`` of the decomposition's training and test sequences.
    n_states : int
    base : ConditionalChain
        The ``+couplings`` row (the shared fields start there).
    reference_ll, latent_ll : ndarray, shape (n_test,)
        Held-out log-likelihoods (nats) of ``+couplings`` and ``+sequence latent`` per test sequence.
    candidates, max_topics
        ``K`` range of the held-out choice (extended while the best is its largest value).
    n_init : int
        Starts of every ``K >= 2`` in the choice of ``K`` (the chosen fit is continued on all training
        sequences).
    n_bootstrap : int
        Warm-started refits (to ``select_tol``) on resampled training sequences behind the errors of
        ``rho`` and ``xi_topic`` (0: no errors).
    tol, select_tol : float
        Optimiser tolerance of the reported fit, and of the fits choosing ``K`` and the bootstrap.
    max_distance : int
        Largest ``r`` of ``C_z(r)``.
    gof_distance : int
        Largest ``r`` of the ``C(r)`` check.
    """
    from ...measure import correlation_function
    from ..conditional import TopicChain, goodness_of_fit
    from ..conditional.topic_chain import select_n_topics

    t0 = time.perf_counter()
    x_tr, _, m_tr, _ = train
    x_te, tok_te, m_te, len_te = test
    n_tok = int(np.asarray(m_te).sum())
    common = {"position": "position", "token_rows": token_rows, "couplings": "potts", "tol": tol}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", SparseDataWarning)
        # the choice of K compares likelihoods at the 1e-3 level of tolerance (errors are ~1e-3 bits/token
        # and larger); the chosen model is then refined to ``tol``
        sel = select_n_topics(*train, candidates=candidates, max_topics=max_topics, n_states=n_states, rng=seed,
                              n_init=n_init, init=base, **{**common, "tol": select_tol})
        k = int(sel.chosen)
        # refit on all training sequences, continued from the chosen fit (its best of n_init starts)
        chosen = sel.fits[list(sel.candidates).index(k)]
        model = TopicChain(n_topics=k, **common).fit(*train, n_states=n_states, init=base if k == 1 else chosen)
    ll = model.log_likelihood(*test)
    gain, gain_err = _paired(ll, reference_ll, n_tok)
    g_lat, e_lat = _paired(ll, latent_ll, n_tok) if latent_ll is not None else (math.nan, math.nan)
    r_max = max(1, min(int(max_distance), x_te.shape[1] - 1))
    stats = model.topic_statistics(tok_te, m_te, len_te, max_distance=r_max)
    rho_b, xi_b = [], []
    converged = bool(model.result_.success)
    if k > 1 and converged and n_bootstrap > 0:
        gen = np.random.default_rng([seed, 22])
        n_seq = x_tr.shape[0]
        for _ in range(int(n_bootstrap)):
            w = gen.multinomial(n_seq, np.full(n_seq, 1.0 / n_seq)).astype(float)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                warnings.simplefilter("ignore", SparseDataWarning)
                b = TopicChain(n_topics=k, **{**common, "tol": select_tol}).fit(*train, n_states=n_states,
                                                                                 sample_weight=w, init=model)
            if not b.result_.success:
                continue
            st = b.topic_statistics(tok_te, m_te, len_te, max_distance=r_max)
            rho_b.append(st.switching_rate)
            xi_b.append(st.persistence_length)

    def spread(values):
        v = np.asarray(values, float)
        return float(v.std(ddof=1)) if v.size >= 2 and np.isfinite(v).all() else math.nan

    gof = {}
    g_max = max(1, min(int(gof_distance), x_te.shape[1] - 1))
    try:
        model_c = model.model_correlation_function(tok_te, m_te, len_te, max_distance=g_max)
        emp = correlation_function(x_te, m_te, n_states, g_max, (), 0, np.random.default_rng(seed))
        g = goodness_of_fit(model_c, emp, r_min=1, r_max=g_max)
        gof = {"distances": g.distances, "model": g.model, "empirical": g.empirical, "errors": g.errors, "z": g.z,
               "chi2": float(g.chi2), "dof": int(g.dof), "p_value": float(g.p_value),
               "max_abs_z": float(g.max_abs_z), "consistent": bool(g.consistent), "message": g.message}
    except Exception as exc:  # noqa: BLE001 -- reported as n/a
        log.warning("topic chain: goodness of fit failed: %s", exc)
    show = min(int(n_show), x_te.shape[0])
    posterior = model.predict_proba(x_te[:show], tok_te[:show], m_te[:show], len_te[:show])
    return TopicRow(
        n_topics=k, candidates=sel.candidates, validation_gain=sel.gain / _LN2,
        validation_gain_error=sel.gain_error / _LN2, at_edge=sel.at_edge, converged=converged, gain=gain,
        gain_error=gain_err, gain_latent=g_lat, gain_latent_error=e_lat, heldout=float(ll.sum() / n_tok / _LN2),
        stay_weight=float(model.stay_weight_), switching_rate=stats.switching_rate,
        switching_rate_error=spread(rho_b), persistence_length=stats.persistence_length,
        persistence_length_error=spread(xi_b), persistence_reason=stats.reason,
        autocorrelation=stats.autocorrelation, occupancy=stats.occupancy, biases=model.biases_,
        n_bootstrap=len(rho_b), gof=gof, posterior=posterior, posterior_rows=np.arange(show),
        posterior_tokens=np.asarray(tok_te[:show]), message=model.result_.message,
        seconds=time.perf_counter() - t0)
