"""Conditional chains (linear-chain CRFs): exact likelihood and gradient, recovery, controls."""

import itertools

import numba
import numpy as np
import pytest
from crf_oracles import mixture_terms
from scipy import stats as sps
from scipy.special import logsumexp

from ising_moe import InvalidParameterError, PottsChain, exact
from ising_moe.fit import ChainMaxLikelihood, chain_log_likelihood
from ising_moe.fit.conditional import ConditionalChain
from ising_moe.fit.conditional import _kernels as CK
from ising_moe.fit.conditional.objective import CRFObjective
from ising_moe.fit.conditional.params import ConditionalData, CRFLayout, TokenVocabulary
from ising_moe.fit.conditional.sampling import sample_chains


def _random_problem(rng, n_seq=6, n=5, q=3, n_rows=4, vocab=7):
    x = rng.integers(0, q, size=(n_seq, n))
    mask = rng.random((n_seq, n)) > 0.3
    mask[:, 0] = True
    mask[: n_seq // 2] = True  # half the sequences fully observed (the fused kernel path)
    lengths = rng.integers(2, n + 1, size=n_seq)
    lengths[0] = n
    tokens = rng.integers(0, vocab, size=(n_seq, n))
    data = ConditionalData.from_arrays(x, tokens, mask, lengths, q)
    rows = np.minimum(data.tokens, n_rows - 1)
    return data, rows


def _kernel(layout, data, rows, theta, weights, want_grad=True, n_chunks=4, py=False):
    params = layout.expand(theta)
    k, q = layout.n_components, layout.n_states
    ll = np.empty((data.n_sequences, k))
    out = (np.zeros((k, data.chain.n_sites, q)), np.zeros((k, max(layout.n_token_rows, 1), q)), np.zeros((k, q, q)),
           np.zeros(k))
    fn = CK.crf_pass.py_func if py else CK.crf_pass
    total = fn(data.chain.states, data.chain.observed, rows, data.chain.lengths, data.holes, weights,
               *layout.tables(params), layout.max_range, params["log_pi"], n_chunks, want_grad, ll, *out)
    return total, ll, out, params


@pytest.mark.parametrize("couplings,max_range", list(itertools.product(["potts", "full", "none"], [1, 2])))
def test_likelihood_and_gradient_equal_enumeration(couplings, max_range):
    """Token-dependent site fields, hidden sites, unequal lengths and sequence weights: the kernel's
    log-likelihoods and moments, and the objective's gradient, equal brute-force enumeration."""
    rng = np.random.default_rng(10 + max_range)
    data, rows = _random_problem(rng)
    layout = CRFLayout(5, 3, "position", 4, 3, couplings, max_range)
    theta = rng.normal(size=layout.n_params)
    weights = rng.random(data.n_sequences) + 0.5
    total, ll, (g_pos, g_tok, g_pair, g_j2), params = _kernel(layout, data, rows, theta, weights)
    c = data.chain
    b_total, b_ll, (b_pos, b_tok, b_pair, b_j2) = mixture_terms(params, rows, c.states, c.observed, c.lengths,
                                                                weights, 3)
    np.testing.assert_allclose(ll, b_ll, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(total, b_total, rtol=1e-10)
    np.testing.assert_allclose(g_pos, b_pos, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g_tok, b_tok, rtol=1e-10, atol=1e-12)
    if couplings == "full" or max_range == 2:
        np.testing.assert_allclose(g_pair, b_pair, rtol=1e-10, atol=1e-12)
    elif couplings == "potts":  # the Potts kernel accumulates the diagonal only
        np.testing.assert_allclose(np.diagonal(g_pair, axis1=1, axis2=2), np.diagonal(b_pair, axis1=1, axis2=2),
                                   rtol=1e-10, atol=1e-12)
    if max_range == 2:
        np.testing.assert_allclose(g_j2, b_j2, rtol=1e-10, atol=1e-12)
    # the objective: value and gradient through the layout's adjoint, against the same enumeration
    obj = CRFObjective(data, rows, layout, 0.0, weights)
    value, grad = obj(theta)
    np.testing.assert_allclose(value * obj.n_tokens, -b_total, rtol=1e-10)
    expected = layout.adjoint(b_pos, b_tok, b_pair, b_j2, np.zeros(1))
    np.testing.assert_allclose(-grad * obj.n_tokens, expected, rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("position", ["position", "smooth:3", "blocks:2", "homogeneous", "none"])
@pytest.mark.parametrize("n_components,vary", [(1, "bias"), (3, "bias"), (2, "couplings"), (2, "fields"), (2, "all")])
def test_layout_adjoint_is_transpose_of_expansion(position, n_components, vary):
    """``adjoint`` is the transpose of the (linear) map from ``theta`` to the fields and couplings,
    with the Potts gradient read as the trace of a zero-sum pair-moment difference."""
    rng = np.random.default_rng(2)
    n, q = 7, 3
    layout = CRFLayout(n, q, position, 5, 4 if position != "none" else -1, "full", 2, n_components, vary)
    v = rng.normal(size=layout.n_params)
    v[layout.logit_slot] = 0.0
    g = [rng.normal(size=(n_components, n, q)), rng.normal(size=(n_components, 5, q)),
         rng.normal(size=(n_components, q, q)), rng.normal(size=n_components), np.zeros(n_components)]
    p = layout.expand(v)
    lhs = layout.adjoint(*g) @ v
    rhs = sum((g[i] * p[key]).sum() for i, key in enumerate(("position", "token", "coupling", "coupling2")))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)
    # projecting expanded parameters gives theta back (the layout is injective)
    np.testing.assert_allclose(layout.project(p), v, atol=1e-12)


def test_kernel_parity_and_thread_count_independence():
    rng = np.random.default_rng(3)
    data, rows = _random_problem(rng, n_seq=5, n=4)
    layout = CRFLayout(4, 3, "position", 4, 3, "full", 1, 2, "bias")
    theta = rng.normal(size=layout.n_params)
    w = np.ones(data.n_sequences)
    jit = _kernel(layout, data, rows, theta, w)
    py = _kernel(layout, data, rows, theta, w, py=True)
    np.testing.assert_allclose(jit[0], py[0], rtol=1e-13)
    for a, b in zip(jit[2], py[2]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _kernel(layout, data, rows, theta, w)
    finally:
        numba.set_num_threads(old)
    assert one[0] == jit[0]
    for a, b in zip(one[2], jit[2]):
        assert np.array_equal(a, b)


def test_vocabulary_keeps_most_frequent_ids_and_pools_the_rest():
    tokens = np.array([[5, 5, 5, 9, 9, 2, 7, 7], [9, 7, 3, 3, 3, 3, 1, 0]])
    data = ConditionalData.from_arrays(np.zeros_like(tokens), tokens, None, None, 2)
    vocab = TokenVocabulary.build(data, 3)
    assert vocab.ids.tolist() == [3, 5, 7]  # 4 x 3; then 5, 7, 9 with 3 each: ties by smaller id
    assert vocab.counts.tolist() == [4, 3, 3, 6]
    np.testing.assert_array_equal(vocab.rows(np.array([3, 5, 7, 9, 123456])), [0, 1, 2, 3, 3])
    with pytest.raises(InvalidParameterError, match="tokens"):
        ConditionalChain().fit(np.tile([0, 1], (3, 2)))


def _simulate(pos, tok, coupling, tokens, rng):
    """Independent oracle: one exact PottsChain per sequence (``ising_moe.exact``)."""
    out = np.empty(tokens.shape, dtype=np.int64)
    for s in range(tokens.shape[0]):
        out[s] = exact.sample(PottsChain(tokens.shape[1], coupling, pos + tok[tokens[s]]), 1, rng=rng)[0]
    return out


def _truth(n=14, q=3, vocab=6, seed=20):
    rng = np.random.default_rng(seed)
    pos = 0.6 * rng.normal(size=(n, q))
    pos -= pos.mean(axis=1, keepdims=True)
    tok = 1.2 * rng.normal(size=(vocab, q))
    tok -= tok.mean(axis=1, keepdims=True)
    return pos, tok, 0.7 * (np.eye(q) - 1.0 / q)


def test_fitter_recovers_token_position_and_coupling_parameters():
    """Data from a known conditional chain (per-sequence exact samples): every gauge-fixed parameter
    within 5 standard errors, and the standardised errors distributed as N(0, 1)."""
    pos, tok, coupling = _truth()
    rng = np.random.default_rng(21)
    tokens = rng.choice(6, size=(2500, 14), p=[0.3, 0.25, 0.2, 0.1, 0.1, 0.05])
    x = _simulate(pos, tok, coupling, tokens, rng)
    fit = ConditionalChain(token_rows=6, l2=0.01, standard_errors=True).fit(x, tokens)
    res = fit.result_
    assert res.success and sorted(res.vocabulary.tolist()) == [0, 1, 2, 3, 4, 5] and res.token_counts[-1] == 0
    # the truth in the reported gauge: count-weighted mean token row moved into the position fields
    w = res.token_counts[:-1] / res.token_counts.sum()
    true_tok = tok[res.vocabulary] - w @ tok[res.vocabulary]
    z = np.concatenate([((fit.token_fields_[:-1] - true_tok) / res.stderr["token"][0][:-1]).ravel(),
                        ((fit.position_fields_ - (pos + w @ tok[res.vocabulary])) / res.stderr["position"][0]).ravel(),
                        [(fit.couplings_[0, 0] - coupling[0, 0]) / res.stderr["coupling"][0][0, 0]]])
    assert np.abs(z).max() < 5, np.abs(z).max()
    assert 0.6 < np.mean(z**2) < 1.6
    # a different truth must fail the same comparison (negative control)
    z_wrong = (fit.couplings_[0, 0] - 0.5 * coupling[0, 0]) / res.stderr["coupling"][0][0, 0]
    assert abs(z_wrong) > 5


def test_without_tokens_equals_the_unconditional_chain():
    """``token_rows=0`` is :class:`ChainMaxLikelihood`'s model, parametrisation and prior: same
    likelihood at the same parameters (to rounding) and the same fit (to the optimiser tolerance)."""
    rng = np.random.default_rng(4)
    n, q = 10, 3
    x = exact.sample(PottsChain.potts(n, q, coupling=0.8, field=rng.normal(size=(n, q))), 600, rng=rng)
    mask = rng.random(x.shape) > 0.2
    ours = ConditionalChain(token_rows=0, couplings="full", tol=1e-9).fit(x, mask=mask, lengths=np.full(600, n))
    ref = ChainMaxLikelihood(couplings="full", standard_errors=False, tol=1e-9, bias_correction="none").fit(
        x, mask, np.full(600, n))
    from ising_moe.fit import ChainData

    data = ChainData.from_arrays(x, mask, np.full(600, n), q)
    ll_ref = chain_log_likelihood(data, ours.position_fields_, ours.couplings_[None, None])
    np.testing.assert_allclose(ours.log_likelihood(x, mask=mask, lengths=np.full(600, n)), ll_ref, rtol=1e-10)
    np.testing.assert_allclose(ours.position_fields_, ref.fields_, atol=1e-6)
    np.testing.assert_allclose(ours.couplings_, ref.couplings_[0, 0], atol=1e-6)


def _paired_gain(better, worse, x, tokens):
    d = better.log_likelihood(x, tokens) - worse.log_likelihood(x, tokens)
    return d.sum() / (np.sqrt(len(d)) * d.std(ddof=1))


def test_negative_controls_without_tokens_or_couplings_lose_heldout_likelihood():
    pos, tok, coupling = _truth(seed=22)
    rng = np.random.default_rng(23)
    tokens = rng.integers(0, 6, size=(1600, 14))
    x = _simulate(pos, tok, coupling, tokens, rng)
    train, test = slice(0, 1200), slice(1200, None)
    full = ConditionalChain(token_rows=6).fit(x[train], tokens[train])
    no_tokens = ConditionalChain(token_rows=0).fit(x[train], tokens[train], init=full)
    no_couplings = ConditionalChain(token_rows=6, couplings="none").fit(x[train], tokens[train])
    no_position = ConditionalChain(token_rows=6, position="none").fit(x[train], tokens[train], init=full)
    assert _paired_gain(full, no_tokens, x[test], tokens[test]) > 10
    assert _paired_gain(full, no_couplings, x[test], tokens[test]) > 5
    assert _paired_gain(full, no_position, x[test], tokens[test]) > 5
    # positive control: a homogeneous J2 that the truth does not have gains nothing significant
    range2 = ConditionalChain(token_rows=6, max_range=2).fit(x[train], tokens[train], init=full)
    assert abs(_paired_gain(range2, full, x[test], tokens[test])) < 3


@pytest.mark.parametrize("coupling2,length", [(0.0, 4), (0.0, 3), (0.9, 4), (0.9, 3)])
def test_sampler_matches_enumeration(coupling2, length):
    rng = np.random.default_rng(5)
    n, q = 4, 3
    pos, tok, coupling = rng.normal(size=(n, q)), rng.normal(size=(5, q)), rng.normal(size=(q, q))
    tokens = np.tile(rng.integers(0, 5, size=n), (20000, 1))
    x, _ = sample_chains(pos, tok, coupling, tokens, np.full(20000, length), coupling2=coupling2, rng=6)
    assert (x[:, length:] == 0).all()
    conf = np.array(list(itertools.product(range(q), repeat=length)))
    e = sum(pos[i, conf[:, i]] + tok[tokens[0, i], conf[:, i]] for i in range(length))
    e = e + sum(coupling[conf[:, i], conf[:, i + 1]] for i in range(length - 1))
    e = e + sum(coupling2 * (conf[:, i] == conf[:, i + 2]) for i in range(length - 2))
    probs = np.exp(e - logsumexp(e))
    counts = np.bincount((x[:, :length] * q ** np.arange(length - 1, -1, -1)).sum(axis=1), minlength=len(conf))
    chi2 = ((counts - 20000 * probs) ** 2 / (20000 * probs)).sum()
    assert sps.chi2.sf(chi2, len(conf) - 1) > 1e-3
    # negative control: the chain with a wrong J2 (0.9 added, or the true one removed) is rejected
    delta = 0.9 if coupling2 == 0 else -coupling2
    e_wrong = e + sum(delta * (conf[:, i] == conf[:, i + 2]) for i in range(length - 2))
    wrong = np.exp(e_wrong - logsumexp(e_wrong))
    chi2_wrong = ((counts - 20000 * wrong) ** 2 / (20000 * wrong)).sum()
    assert sps.chi2.sf(chi2_wrong, len(conf) - 1) < 1e-6
