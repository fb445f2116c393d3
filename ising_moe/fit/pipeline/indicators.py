"""Per-expert Ising chains on the indicator ``1[e in top-k]`` of top-k routing."""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np

from ...exact import solve
from ..data import ChainData
from ..max_likelihood import ChainMaxLikelihood, IndependentSites

log = logging.getLogger(__name__)


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
    from ...measure import correlation_function

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
        # one held-out sequence gives no spread: no error (NaN), never a NumPy warning
        out["gain_error"][e] = math.sqrt(len(d)) * d.std(ddof=1) / test_data.n_tokens if len(d) > 1 else np.nan
        # the model's C_e(1) is the per-state correlation of state 1 of the fitted chain
        out["fitted_c1"][e] = solve(res.model()).correlation_function(1, per_state=True)[1, 1]
    return IndicatorComparison(experts=np.arange(n_experts), empirical_c1=empirical, **out)
