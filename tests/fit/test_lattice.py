"""The layer x position lattice: exact column solver against enumeration, the Kronecker step
against the dense column step, pseudo-likelihood, exact and Monte Carlo fits against each other,
recovery of planted parameters and the shuffled-columns negative control."""

import itertools
import warnings

import numpy as np
import pytest
from oracles import chi_square_pvalue
from scipy import stats as sps

from ising_moe.errors import InvalidParameterError
from ising_moe.exact.product import Transition, forward_backward
from ising_moe.fit.lattice import ConditionalLattice, ExactLattice, LatticeData, LatticeLayout, PseudoLikelihood

CASES = [(2, 2, 3, "full", 1), (3, 2, 3, "potts", 1), (2, 3, 3, "full", 2), (2, 3, 2, "none", 1)]


def _planted(lam, q, couplings, cross_range, seed, n_rows=2, scale=0.8):
    lay = LatticeLayout(lam, q, n_rows=n_rows, couplings=couplings, cross_range=cross_range)
    return lay, scale * np.random.default_rng(seed).normal(size=lay.n_params)


def _enumerate(lay, theta, rows, length):
    """Every lattice of one sequence and its probability, from ``theta . phi`` alone."""
    q, lam, n = lay.n_states, lay.n_layers, rows.shape[0]
    conf = np.array(list(itertools.product(range(q), repeat=lam * length)), dtype=np.int64).reshape(-1, lam, length)
    full = np.zeros((len(conf), lam, n), np.int64)
    full[:, :, :length] = conf
    data = LatticeData.from_arrays(full, np.repeat(rows[None], len(conf), 0), np.full(len(conf), length), q)
    phi = lay.statistics_per_sequence(data)
    lw = phi @ theta
    log_z = np.logaddexp.reduce(lw)
    return full, phi, np.exp(lw - log_z), log_z


@pytest.mark.parametrize("q,lam,n,couplings,cross_range", CASES)
def test_column_likelihood_and_moments_match_enumeration(q, lam, n, couplings, cross_range):
    lay, theta = _planted(lam, q, couplings, cross_range, seed=q + lam)
    rows = np.array([[0, 1, 1][:n], [1, 0, 1][:n]])
    lengths = np.array([n, 2])
    ex = ExactLattice(lay, theta)
    data = LatticeData.from_arrays(np.zeros((2, lam, n), np.int64), rows, lengths, q)
    log_z, counts = ex.expected_counts(data)
    expected = lay.project(counts)
    brute_z, brute_phi = [], 0.0
    for s in range(2):
        _, phi, p, lz = _enumerate(lay, theta, rows[s], lengths[s])
        brute_z.append(lz)
        brute_phi = brute_phi + p @ phi
    np.testing.assert_allclose(log_z, brute_z, rtol=1e-12)
    np.testing.assert_allclose(expected, brute_phi, rtol=1e-10, atol=1e-12)


def test_exact_gradient_matches_finite_differences():
    lay, theta = _planted(3, 2, "full", 2, seed=1)
    rng = np.random.default_rng(0)
    data = LatticeData.from_arrays(rng.integers(0, 2, (4, 3, 5)), rng.integers(0, 2, (4, 5)), [5, 4, 3, 5], 2)
    _, grad = ExactLattice(lay, theta).log_likelihood_and_gradient(data)
    eps = 1e-6
    for k in range(lay.n_params):
        e = np.zeros(lay.n_params)
        e[k] = eps
        up = ExactLattice(lay, theta + e).log_likelihood(data).sum()
        down = ExactLattice(lay, theta - e).log_likelihood(data).sum()
        assert abs((up - down) / (2 * eps) - grad[k]) < 1e-6


def test_kronecker_step_matches_dense_column_step():
    lay, theta = _planted(2, 3, "full", 1, seed=5)
    ex = ExactLattice(lay, theta)
    d = ex.digits
    coupling = lay.expand(theta)["coupling"]
    dense = sum(coupling[l][d[:, l][:, None], d[:, l][None, :]] for l in range(lay.n_layers))
    rows = np.array([[0, 1, 0, 1, 1, 0], [1, 1, 0, 0, 1, 1]])
    lengths = np.array([6, 4])
    unary = ex.unary[rows]
    kron = forward_backward(unary, ex.transition, lengths)
    full = forward_backward(unary, Transition.dense(dense), lengths)
    np.testing.assert_allclose(kron.log_partition, full.log_partition, rtol=1e-12)
    np.testing.assert_allclose(kron.marginals, full.marginals, atol=1e-12)
    pair = full.pair_counts.reshape(3, 3, 3, 3)  # (x0, x1, y0, y1)
    np.testing.assert_allclose(kron.pair_counts[0], pair.sum(axis=(1, 3)), atol=1e-12)
    np.testing.assert_allclose(kron.pair_counts[1], pair.sum(axis=(0, 2)), atol=1e-12)


def test_exact_sampler_matches_enumeration():
    lay, theta = _planted(2, 2, "full", 1, seed=3)
    rows = np.array([1, 0, 1])
    ex = ExactLattice(lay, theta)
    draws = ex.sample(np.repeat(rows[None], 8000, 0), np.full(8000, 3), rng=0)
    full, _, p, _ = _enumerate(lay, theta, rows, 3)
    # chi_square_pvalue indexes configurations row-major over the flattened (layer, position) lattice
    assert (full.reshape(len(full), -1) == np.array(list(itertools.product(range(2), repeat=6)))).all()
    assert chi_square_pvalue(draws.reshape(8000, -1), p, 2) > 1e-6
    _, _, p_wrong, _ = _enumerate(lay, 0.5 * theta, rows, 3)
    assert chi_square_pvalue(draws.reshape(8000, -1), p_wrong, 2) < 1e-6


def test_pseudo_likelihood_matches_enumerated_conditionals():
    lay, theta = _planted(3, 3, "full", 2, seed=8)
    rng = np.random.default_rng(2)
    x = rng.integers(0, 3, (1, 3, 4))
    rows = rng.integers(0, 2, (1, 4))
    data = LatticeData.from_arrays(x, rows, None, 3)
    value, grad = PseudoLikelihood(lay, data).log_pseudo_likelihood(theta)
    brute = 0.0
    for l in range(3):
        for i in range(4):
            alt = np.repeat(x, 3, axis=0)
            alt[:, l, i] = np.arange(3)
            lw = lay.log_weights(theta, alt, np.repeat(rows, 3, 0), None)
            brute += lw[x[0, l, i]] - np.logaddexp.reduce(lw)
    assert abs(value - brute) < 1e-10
    eps = 1e-6
    e = np.zeros(lay.n_params)
    for k in range(0, lay.n_params, 7):
        e[:] = 0
        e[k] = eps
        pl = PseudoLikelihood(lay, data)
        fd = (pl.log_pseudo_likelihood(theta + e, False)[0] - pl.log_pseudo_likelihood(theta - e, False)[0]) / (2 * eps)
        assert abs(fd - grad[k]) < 1e-6


# ----------------------------------------------------------------------------- fits
LAM, Q, N_SEQ, N_POS = 3, 3, 60, 64


@pytest.fixture(scope="module")
def planted():
    lay = LatticeLayout(LAM, Q, n_rows=1, couplings="potts", cross_range=1)
    rng = np.random.default_rng(0)
    theta = np.zeros(lay.n_params)
    theta[lay.slices["token"]] = 0.5 * rng.normal(size=lay.slices["token"].stop)
    theta[lay.slices["coupling"]] = [0.8, 0.5, 0.3]
    theta[lay.slices["cross"]] = rng.normal(size=lay.n_params - lay.slices["cross"].start)
    x = ExactLattice(lay, theta).sample(np.zeros((N_SEQ, N_POS), np.int64), np.full(N_SEQ, N_POS), rng)
    fits = {m: ConditionalLattice(m, token_rows=0, l2=0.01, mc_options={"window": 100}).fit(x, n_states=Q)
            for m in ("exact", "pseudo-likelihood", "monte-carlo")}
    return lay, theta, x, fits


def _cross_chi2_p(fit):
    sl = fit.layout_.slices["cross"]
    cov = fit.result_.covariance[sl, sl]
    th = fit.theta_[sl]
    return float(sps.chi2.sf(th @ np.linalg.solve(cov, th), th.size))


def test_exact_fit_recovers_planted_parameters(planted):
    lay, theta, _, fits = planted
    res = fits["exact"].result_
    assert res.success
    z = (res.theta - theta) / res.theta_stderr
    assert np.abs(z).max() <= 4, z
    d = res.theta - theta  # the whole vector, with its covariance
    assert sps.chi2.sf(d @ np.linalg.solve(res.covariance, d), d.size) > 1e-3
    assert _cross_chi2_p(fits["exact"]) < 1e-10  # planted cross-layer couplings are seen


def test_monte_carlo_learning_matches_exact_ml_within_its_errors(planted):
    _, _, _, fits = planted
    mc, ex = fits["monte-carlo"].result_, fits["exact"].result_
    assert mc.success, mc.message
    z = (mc.theta - ex.theta) / mc.mc_stderr
    assert np.abs(z).max() <= 5, z
    # and its Fisher errors agree with the exact fit's (Monte Carlo estimate of the same matrix)
    np.testing.assert_allclose(mc.theta_stderr, ex.theta_stderr, rtol=0.25)


def test_pseudo_likelihood_agrees_with_both(planted):
    _, _, _, fits = planted
    pl, ex, mc = (fits[m].result_ for m in ("pseudo-likelihood", "exact", "monte-carlo"))
    assert pl.success
    # consistent but less efficient: within 4 statistical errors of the exact ML estimate
    assert np.abs((pl.theta - ex.theta) / ex.theta_stderr).max() <= 4
    assert np.abs((pl.theta - mc.theta) / mc.theta_stderr).max() <= 4
    # and never a better likelihood than the exact maximum
    assert pl.log_likelihood <= ex.log_likelihood + 1e-6


def test_shuffled_columns_remove_cross_layer_couplings(planted):
    """Negative control: every layer's chain is kept but shifted along the text by its own random
    offset (cyclically, per sequence), which breaks the alignment of the layers of one token.

    The sequences are 64 positions long, far beyond the correlation length: each sequence's
    composition is shared by its layers (through the planted cross couplings) and survives the
    shift, and on 16-position sequences it leaves cross couplings at p ~ 1e-10 (measured)."""
    lay, _, x, _ = planted
    rng = np.random.default_rng(9)
    shuffled = x.copy()
    for s in range(len(x)):
        for l in range(1, LAM):
            shuffled[s, l] = np.roll(x[s, l], rng.integers(1, N_POS))
    fit = ConditionalLattice("exact", token_rows=0, l2=0.01).fit(shuffled, n_states=Q)
    assert _cross_chi2_p(fit) > 1e-3
    assert np.abs(fit.theta_[lay.slices["cross"]] / fit.result_.theta_stderr[lay.slices["cross"]]).max() <= 4


def test_token_fields_and_held_out_score():
    lay, theta = _planted(2, 3, "full", 1, seed=4, n_rows=3, scale=0.6)
    rng = np.random.default_rng(1)
    tokens = rng.choice([5, 9, 11], size=(120, 10), p=[0.5, 0.3, 0.2])
    fit0 = ConditionalLattice("pseudo-likelihood", couplings="full", token_rows=2, l2=0.01)
    fit0.fit(np.zeros((120, 2, 10), np.int64) + rng.integers(0, 3, (120, 2, 10)), tokens, n_states=3)
    rows = fit0.vocabulary_.rows(tokens)
    x = ExactLattice(lay, theta).sample(rows, np.full(120, 10), rng)
    fit = ConditionalLattice("exact", couplings="full", token_rows=2, l2=0.01).fit(x[:90], tokens[:90])
    assert fit.result_.success
    score = fit.score(x[90:], tokens[90:])
    ll = fit.log_likelihood(x[90:], tokens[90:])
    assert abs(score - ll.sum() / (30 * 10)) < 1e-12
    indep = ConditionalLattice("exact", couplings="full", cross_range=0, token_rows=2, l2=0.01).fit(x[:90], tokens[:90])
    assert score > indep.score(x[90:], tokens[90:])  # the planted cross couplings help on held-out data
    with pytest.raises(InvalidParameterError, match="tokens"):
        fit.score(x[90:])


def test_bad_input_is_named():
    with pytest.raises(InvalidParameterError, match="method"):
        ConditionalLattice("magic", token_rows=0).fit(np.zeros((3, 2, 4), np.int64), n_states=2)
    with pytest.raises(InvalidParameterError, match="joint states"):
        ConditionalLattice("exact", token_rows=0).fit(np.zeros((3, 6, 4), np.int64), n_states=8)
    with pytest.raises(InvalidParameterError, match="shape"):
        ConditionalLattice(token_rows=0).fit(np.zeros((3, 4), np.int64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ConditionalLattice("pseudo-likelihood", token_rows=0).fit(np.zeros((3, 2, 4), np.int64), n_states=2)


@pytest.mark.parametrize("couplings", ["potts", "full"])
def test_moments_mean_is_exact_and_variance_scale_close(couplings):
    """The Monte Carlo learning moments: exact mean of phi over the sequences; the variance scale
    (cells treated as uncorrelated) within a factor 2 of the exact variance on the median."""
    lay = LatticeLayout(3, 4, n_rows=5, couplings=couplings, cross_range=2)
    rng = np.random.default_rng(0)
    data = LatticeData.from_arrays(rng.integers(0, 4, (30, 3, 12)), rng.integers(0, 5, (30, 12)),
                                   rng.integers(2, 13, 30), 4)
    mean, var = lay.moments(data)
    phi = lay.statistics_per_sequence(data)
    np.testing.assert_allclose(mean, phi.mean(axis=0), atol=1e-12)
    ok = phi.var(axis=0) > 0
    assert 0.5 < np.median(var[ok] / phi.var(axis=0)[ok]) < 2


def test_monte_carlo_fit_recovers_parameters_of_sampler_data():
    """The path for large lattices, end to end: data drawn by long heat-bath runs of the 2D sampler
    (not the exact sampler), fitted by Monte Carlo learning; couplings within 4 of the Fisher
    standard errors estimated on the chains, and the next-nearest cross-layer couplings included."""
    from ising_moe.mc.lattice import LatticeState, LatticeTarget, sweep

    lay = LatticeLayout(4, 3, n_rows=1, couplings="full", cross_range=2)
    rng = np.random.default_rng(3)
    theta = 0.5 * rng.normal(size=lay.n_params)
    p = lay.expand(theta)
    n_seq, n = 80, 48
    target = LatticeTarget(p["token"], p["coupling"], p["cross"], lay.pairs, np.zeros((n_seq, n), np.int64),
                           np.full(n_seq, n))
    x = sweep(target, LatticeState.initial(target, rng), 400).spins
    fit = ConditionalLattice("monte-carlo", couplings="full", cross_range=2, token_rows=0, l2=0.01,
                             mc_options={"window": 100}).fit(x, n_states=3)
    res = fit.result_
    assert res.success, res.message
    sl = slice(lay.slices["coupling"].start, lay.n_params)
    z = (res.theta[sl] - theta[sl]) / res.theta_stderr[sl]
    assert np.abs(z).max() <= 4, z


@pytest.mark.parametrize("couplings", ["potts", "full"])
def test_conditional_moments_are_unbiased_and_less_noisy(couplings):
    """Rao-Blackwellised moments along a heat-bath run average to the exact expected statistics
    (batch-means errors, |z| <= 5) with less noise per sweep than the plain counts; evaluated with
    the wrong parameters (the conditionals of another model) they are rejected."""
    from ising_moe.mc.lattice import LatticeState, LatticeTarget, sweep

    lay = LatticeLayout(3, 3, n_rows=4, couplings=couplings, cross_range=2)
    rng = np.random.default_rng(1)
    theta = 0.5 * rng.normal(size=lay.n_params)
    rows, lengths = rng.integers(0, 4, (30, 6)), np.r_[np.full(5, 4), np.full(25, 6)]
    data = LatticeData.from_arrays(np.zeros((30, 3, 6), np.int64), rows, lengths, 3)
    _, counts = ExactLattice(lay, theta).expected_counts(data)
    exact = lay.project(counts) / 30
    p, wrong = lay.expand(theta), lay.expand(theta * 1.3)
    target = LatticeTarget(p["token"], p["coupling"], p["cross"], lay.pairs, rows, lengths)
    state = sweep(target, LatticeState.initial(target, 2), 50)
    plain, rb, rb_wrong = [], [], []
    for _ in range(600):
        sweep(target, state, 1)
        d = LatticeData(state.spins, rows, lengths, 3)
        plain.append(lay.moments(d)[0])
        rb.append(lay.conditional_moments(d, p)[0])
        rb_wrong.append(lay.conditional_moments(d, wrong)[0])

    def z(series):
        batches = np.asarray(series).reshape(20, 30, -1).mean(axis=1)
        return (batches.mean(axis=0) - exact) / (batches.std(axis=0, ddof=1) / np.sqrt(20))

    assert np.abs(z(rb)).max() <= 5
    assert np.abs(z(rb_wrong)).max() > 5
    assert np.median(np.std(rb, axis=0) / np.std(plain, axis=0)) < 0.7
