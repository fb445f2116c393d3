"""Mixtures of (conditional) chains: exact likelihood, choice of K, recovery, controls, and the
model C(r) in the empirical estimator's terms."""

import contextlib
import itertools
import warnings

import numpy as np
import pytest
from crf_oracles import estimator_expectation, mixture_terms
from scipy.special import logsumexp

from ising_moe import PottsChain, exact
from ising_moe.fit import ChainData, chain_log_likelihood
from ising_moe.fit.conditional import ConditionalChain
from ising_moe.fit.conditional.goodness import (
    goodness_of_fit,
    model_correlation_function,
)
from ising_moe.fit.conditional.mixture import ChainMixture, select_n_components
from ising_moe.fit.conditional.objective import CRFObjective
from ising_moe.fit.conditional.params import ConditionalData, CRFLayout
from ising_moe.fit.conditional.sampling import sample_chains
from ising_moe.measure import correlation_function

Q, N = 4, 16


@contextlib.contextmanager
def _unconverged():
    """A few iterations only (the parameters are then set by hand): no convergence expected."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield

BIAS = np.array([[1.2, -1.0, 0.0, -0.2], [-1.0, 0.6, 0.6, -0.2], [0.0, -0.4, -1.0, 1.4]])
PI = np.array([0.45, 0.35, 0.2])


def _mixture_data(n_components, n_seq, seed, coupling=0.6):
    rng = np.random.default_rng(seed)
    pos = 0.4 * rng.normal(size=(N, Q))
    pos -= pos.mean(axis=1, keepdims=True)
    bias = BIAS[:n_components] - BIAS[:n_components].mean(axis=0)
    pi = PI[:n_components] / PI[:n_components].sum()
    comp = rng.choice(n_components, size=n_seq, p=pi)
    x = np.empty((n_seq, N), dtype=np.int64)
    j = coupling * (np.eye(Q) - 1.0 / Q)
    for k in range(n_components):  # independent oracle: exact samples of each component's chain
        rows = np.flatnonzero(comp == k)
        x[rows] = exact.sample(PottsChain(N, j, pos + bias[k]), len(rows), rng=rng)
    return x, comp, pos, bias, pi


@pytest.mark.parametrize("vary", ["bias", "couplings", "fields", "all"])
def test_mixture_likelihood_and_gradient_equal_enumeration(vary):
    rng = np.random.default_rng(1)
    n, q = 5, 3
    x = rng.integers(0, q, size=(6, n))
    mask = rng.random(x.shape) > 0.3
    mask[:, 0] = True
    data = ConditionalData.from_arrays(x, rng.integers(0, 6, size=x.shape), mask, rng.integers(2, n + 1, size=6), q)
    rows = np.minimum(data.tokens, 3)
    layout = CRFLayout(n, q, "smooth:2", 4, 3, "full", 2, 3, vary)
    theta = rng.normal(size=layout.n_params)
    weights = rng.random(6) + 0.5
    obj = CRFObjective(data, rows, layout, 0.0, weights)
    ll, total, grad = obj.log_likelihoods(theta, want_grad=True)
    params = layout.expand(theta)
    c = data.chain
    b_total, b_ll, moments = mixture_terms(params, rows, c.states, c.observed, c.lengths, weights, q)
    np.testing.assert_allclose(ll, b_ll, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(total, b_total, rtol=1e-10)
    # the explicit sum over components
    np.testing.assert_allclose(total, weights @ logsumexp(b_ll + params["log_pi"], axis=1), rtol=1e-12)
    joint = b_ll + params["log_pi"]
    resp = np.exp(joint - logsumexp(joint, axis=1, keepdims=True))
    g_logpi = weights @ (resp - np.exp(params["log_pi"]))
    np.testing.assert_allclose(grad, layout.adjoint(*moments, g_logpi), rtol=1e-10, atol=1e-11)


def test_mixture_log_likelihood_is_the_sum_over_component_chains():
    """Against the existing unconditional chain code (``chain_log_likelihood``, hidden sites summed):
    ``log sum_k pi_k p_k(x)`` per sequence, to rounding."""
    x, _, _, _, _ = _mixture_data(3, 300, seed=2)
    rng = np.random.default_rng(3)
    mask = rng.random(x.shape) > 0.2
    lengths = rng.integers(8, N + 1, size=len(x))
    model = ChainMixture(n_components=3, vary="all", couplings="full", token_rows=0, max_iter=30, rng=0)
    with _unconverged():
        model.fit(x, mask=mask, lengths=lengths)
    data = ChainData.from_arrays(x, mask, lengths, Q)
    per_comp = np.stack([chain_log_likelihood(data, model.position_fields_[k], model.couplings_[k][None, None])
                         for k in range(3)], axis=1)
    expected = logsumexp(per_comp + np.log(model.weights_), axis=1)
    np.testing.assert_allclose(model.log_likelihood(x, mask=mask, lengths=lengths), expected, rtol=1e-10)


@pytest.mark.parametrize("n_components", [2, 3])
def test_number_of_components_chosen_by_heldout_likelihood(n_components):
    """K = 2, 3 data: the held-out choice is the true K; the model without the true component loses
    held-out likelihood by many paired standard errors (negative control)."""
    x, _, _, _, _ = _mixture_data(n_components, 1400, seed=10 + n_components)
    sel = select_n_components(x, candidates=range(1, n_components + 2), token_rows=0, n_init=2, rng=0)
    assert sel.chosen == n_components
    smaller = n_components - 2  # index of K - 1
    assert sel.gain[smaller] / sel.gain_error[smaller] < -5


def _match(fitted, true):
    """Permutation of the fitted components closest to the true ones."""
    return min(itertools.permutations(range(len(true))), key=lambda p: np.abs(fitted[list(p)] - true).sum())


def test_mixture_recovers_weights_offsets_and_coupling():
    x, comp, _, bias, pi = _mixture_data(2, 2500, seed=4)
    model = ChainMixture(n_components=2, token_rows=0, l2=0.01, standard_errors=True, n_init=2, rng=1).fit(x)
    res = model.result_
    assert res.success
    perm = list(_match(model.biases_, bias))
    z_bias = (model.biases_[perm] - bias) / res.stderr["bias"][perm]
    j = model.couplings_[0, 0, 0] / (1 - 1 / Q)  # shared Potts coupling
    z_j = (j - 0.6) / (res.stderr["coupling"][0, 0, 0] / (1 - 1 / Q))
    z_w = (model.weights_[perm][0] - pi[0]) / res.stderr["weights"][0]
    assert abs(z_j) < 5 and abs(z_w) < 5, (z_j, z_w)
    assert np.abs(z_bias).max() < 5, z_bias
    # responsibilities find the components; labels give a high mutual information, shuffled ones none
    summary = model.describe(x, labels=comp)
    assert summary.normalised_mutual_information > 0.3
    shuffled = model.describe(x, labels=np.random.default_rng(0).permutation(comp))
    assert shuffled.normalised_mutual_information < 0.01
    assert np.sign(summary.log_rate_ratio[perm][0, 0]) == np.sign(bias[0, 0])


def test_mixture_of_conditional_chains_recovers_token_fields_and_beats_the_single_chain():
    rng = np.random.default_rng(5)
    tok = 1.0 * rng.normal(size=(5, Q))
    tok -= tok.mean(axis=1, keepdims=True)
    pos = np.zeros((2, N, Q)) + (BIAS[:2] - BIAS[:2].mean(axis=0))[:, None, :]
    tokens = rng.integers(0, 5, size=(2000, N))
    x, _ = sample_chains(pos, tok, 0.5 * (np.eye(Q) - 1 / Q), tokens, weights=[0.6, 0.4], rng=6)
    train, test = slice(0, 1500), slice(1500, None)
    single = ConditionalChain(token_rows=5).fit(x[train], tokens[train])
    mix = ChainMixture(n_components=2, token_rows=5, n_init=1, rng=0).fit(x[train], tokens[train], init=single)
    d = mix.log_likelihood(x[test], tokens[test]) - single.log_likelihood(x[test], tokens[test])
    assert d.sum() / (np.sqrt(len(d)) * d.std(ddof=1)) > 5
    # token fields are shared by the components (vary="bias") and recovered in the reported gauge
    w = mix.result_.token_counts / mix.result_.token_counts.sum()
    rows = np.append(mix.result_.vocabulary, 0)
    true = tok[rows] - w[:-1] @ tok[mix.result_.vocabulary]
    np.testing.assert_allclose(mix.token_fields_[0, :-1], true[:-1], atol=0.15)


def test_model_correlation_equals_expectation_of_the_estimator_by_enumeration():
    """Three sequences of four sites, two states, masks: the exact expectation of the empirical C(r)
    over all 2^12 joint configurations, for a conditional chain, a mixture and range 2."""
    rng = np.random.default_rng(7)
    q, n = 2, 4
    x, tok = rng.integers(0, q, size=(40, n)), rng.integers(0, 3, size=(40, n))
    tokens = rng.integers(0, 3, size=(3, n))
    mask = np.array([[1, 0, 1, 1], [1, 1, 0, 1], [1, 1, 1, 1]], dtype=bool)
    for max_range, k in ((1, 1), (1, 2), (2, 2)):
        with _unconverged():
            model = ChainMixture(n_components=k, token_rows=2, couplings="full", max_range=max_range, max_iter=3,
                                 rng=0).fit(x, tok)
        model.theta_ = model.theta_ + rng.normal(size=model.theta_.shape)  # generic parameters
        ours = model_correlation_function(model, tokens, mask, np.full(3, n), max_distance=3)
        params = model.layout_.expand(model.theta_)
        brute = estimator_expectation(params, model.vocabulary_.rows(tokens), mask, q, 3)
        np.testing.assert_allclose(ours, brute, rtol=1e-10, atol=1e-14)


def test_model_correlation_equals_within_sequence_exact_plus_token_covariance():
    """Long chains, no mask: mean over sequences of each chain's exact C(i, j) (``ising_moe.exact``)
    plus the covariance over sequences of the marginals (an independent oracle)."""
    rng = np.random.default_rng(8)
    n, q, r_max = 40, 3, 12
    tokens = rng.integers(0, 4, size=(25, n))
    x = rng.integers(0, q, size=(200, n))
    model = ConditionalChain(token_rows=4, max_iter=5)
    with _unconverged():
        model.fit(x, rng.integers(0, 4, size=(200, n)))
    model.theta_ = model.theta_ + rng.normal(size=model.theta_.shape)
    params = model.layout_.expand(model.theta_)
    rows = model.vocabulary_.rows(tokens)
    marg, joint = [], []
    for s in range(len(tokens)):
        sol = exact.solve(PottsChain(n, params["coupling"][0], params["position"][0] + params["token"][0][rows[s]]))
        marg.append(sol.marginals)
        joint.append([[sol.joint_marginal(i, i + r).trace() if 0 < r < n - i else 1.0 for r in range(r_max + 1)]
                      for i in range(n)])
    marg, joint = np.array(marg), np.array(joint)  # (S, n, q), (S, n, R + 1)
    s_count = len(tokens)
    expected = np.empty(r_max + 1)
    for r in range(r_max + 1):
        within = (joint[:, : n - r, r] - (marg[:, : n - r] * marg[:, r:]).sum(axis=2)).mean(axis=0)
        m_i, m_j = marg[:, : n - r], marg[:, r:]
        cov = ((m_i - m_i.mean(axis=0)) * (m_j - m_j.mean(axis=0))).sum(axis=(0, 2)) / (s_count - 1)
        expected[r] = (within + cov).mean()
    ours = model_correlation_function(model, tokens, max_distance=r_max)
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-14)


def test_goodness_of_fit_accepts_the_true_model_and_rejects_models_without_the_latent():
    """Data from a known mixture of conditional chains: the fitted mixture's C(r) is consistent with
    the empirical one on held-out sequences (|z| <= 5, p > 1e-3); the conditional chain without the
    latent and the plain chain are rejected (the plateau is sequence composition)."""
    rng = np.random.default_rng(9)
    n, q = 32, 4
    tok = 1.0 * rng.normal(size=(6, q))
    tok -= tok.mean(axis=1, keepdims=True)
    pos = np.zeros((2, n, q)) + (BIAS[:2] - BIAS[:2].mean(axis=0))[:, None, :]
    tokens = rng.integers(0, 6, size=(2400, n))
    x, _ = sample_chains(pos, tok, 0.6 * (np.eye(q) - 1 / q), tokens, weights=[0.5, 0.5], rng=10)
    train, test = slice(0, 1600), slice(1600, None)
    mixture = ChainMixture(n_components=2, token_rows=6, n_init=1, rng=0).fit(x[train], tokens[train])
    conditional = ConditionalChain(token_rows=6).fit(x[train], tokens[train])
    plain = ConditionalChain(token_rows=0).fit(x[train])
    emp = correlation_function(x[test], None, q, max_distance=16, n_null=0, rng=0)
    good = goodness_of_fit(model_correlation_function(mixture, tokens[test], max_distance=16), emp)
    assert good.max_abs_z < 5 and good.p_value > 1e-3, (good.z, good.p_value)
    for model in (conditional, plain):
        bad = goodness_of_fit(model_correlation_function(model, tokens[test], max_distance=16), emp)
        assert bad.max_abs_z > 5 and bad.p_value < 1e-6
    no_tokens = model_correlation_function(plain, n_sites=n, lengths=np.full(800, n), max_distance=16)
    np.testing.assert_allclose(no_tokens, model_correlation_function(plain, tokens[test], max_distance=16))
