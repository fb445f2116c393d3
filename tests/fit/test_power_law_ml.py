"""Exact maximum likelihood of the cutoff-R power-law chain: the forward-backward gradient against
finite differences of brute-force enumeration, exact draws against enumeration, recovery of planted
(J, sigma) from the project's samplers within errors (with a negative control), agreement with the
pseudo-likelihood fit, the convergence flag, and the decomposition row's stored C(r)."""

import itertools
import warnings

import numpy as np
import pytest

from ising_moe import LongRangeChain
from ising_moe.errors import ConvergenceWarning
from ising_moe.fit._power_law_kernels import sample_sequences, sequence_log_likelihood_gradients
from ising_moe.fit.power_law import PowerLawMaxLikelihood, PowerLawPseudoLikelihood
from ising_moe.mc import simulate


def _brute(phi, jr, x, seen, length):
    q = phi.shape[1]
    conf = np.array(list(itertools.product(range(q), repeat=length)))
    e = phi[np.arange(length), conf].sum(axis=1)
    for r in range(1, min(len(jr), length - 1) + 1):
        e += jr[r - 1] * (conf[:, :-r] == conf[:, r:]).sum(axis=1)
    ok = np.all(conf[:, seen[:length]] == x[:length][seen[:length]], axis=1)
    return np.logaddexp.reduce(e[ok]) - np.logaddexp.reduce(e), e


@pytest.mark.parametrize("q, big_r", [(2, 1), (3, 2), (2, 4)])
def test_gradient_against_enumeration_and_finite_differences(q, big_r):
    rng = np.random.default_rng(q + big_r)
    s, n = 4, 6
    phi = rng.normal(size=(s, n, q))
    jr = rng.normal(scale=0.6, size=big_r)
    x = rng.integers(0, q, size=(s, n))
    seen = rng.random((s, n)) > 0.3
    lengths = np.array([6, 5, 3, 6])
    out, g, gr = np.empty(s), np.empty((s, n, q)), np.empty((s, big_r))
    sequence_log_likelihood_gradients(phi, jr, x, seen, lengths, out, g, gr)
    h = 1e-6
    for k in range(s):
        ll = _brute(phi[k], jr, x[k], seen[k], lengths[k])[0]
        assert out[k] == pytest.approx(ll, abs=1e-10)
        for r in range(big_r):
            step = np.zeros(big_r)
            step[r] = h
            fd = (_brute(phi[k], jr + step, x[k], seen[k], lengths[k])[0]
                  - _brute(phi[k], jr - step, x[k], seen[k], lengths[k])[0]) / (2 * h)
            assert gr[k, r] == pytest.approx(fd, abs=1e-6)
        for i, a in itertools.product(range(n), range(q)):
            step = np.zeros_like(phi[k])
            step[i, a] = h
            fd = (_brute(phi[k] + step, jr, x[k], seen[k], lengths[k])[0]
                  - _brute(phi[k] - step, jr, x[k], seen[k], lengths[k])[0]) / (2 * h)
            assert g[k, i, a] == pytest.approx(fd, abs=1e-6)  # 0 past the length


def test_class_gradient_in_j_and_sigma_against_finite_differences():
    """The chain rule to (J, sigma) and the token/position fields through the fitter's objective."""
    rng = np.random.default_rng(3)
    x, tok = rng.integers(0, 3, size=(20, 7)), rng.integers(0, 4, size=(20, 7))
    fit = PowerLawMaxLikelihood(max_range=3, position=True, token_rows=2, max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit.fit(x, tok, n_states=3)
    rows = fit.vocabulary_.rows(tok)
    obs = np.ones(x.shape, bool)
    theta = fit.theta_ + rng.normal(scale=0.1, size=fit.theta_.size)
    n_rows = fit.vocabulary_.n_rows
    grad = fit._objective(theta, x, obs, rows, n_rows)[1]
    for k in list(range(0, theta.size, 5)) + [theta.size - 2, theta.size - 1]:
        e = np.zeros_like(theta)
        e[k] = 1e-6
        fd = (fit._objective(theta + e, x, obs, rows, n_rows)[0] - fit._objective(theta - e, x, obs, rows, n_rows)[0])
        assert grad[k] == pytest.approx(fd / 2e-6, abs=1e-7)


def test_exact_draws_against_enumeration():
    rng = np.random.default_rng(1)
    q, n, d = 2, 5, 40_000
    phi = rng.normal(size=(1, n, q))
    jr = np.array([0.8, -0.4, 0.3])
    out = np.empty((1, d, n), np.int64)
    sample_sequences(phi, jr, np.array([n]), rng.random((1, d, n)), out)
    e = _brute(phi[0], jr, np.zeros(n, int), np.zeros(n, bool), n)[1]
    p = np.exp(e - np.logaddexp.reduce(e))
    codes = out[0] @ (q ** np.arange(n - 1, -1, -1))
    emp = np.bincount(codes, minlength=q**n) / d
    z = (emp - p) / np.sqrt(p * (1 - p) / d)
    assert np.abs(z).max() < 4.5, np.abs(z).max()
    # negative control: the same draws against another coupling are rejected
    e2 = _brute(phi[0], -jr, np.zeros(n, int), np.zeros(n, bool), n)[1]
    p2 = np.exp(e2 - np.logaddexp.reduce(e2))
    assert np.abs((emp - p2) / np.sqrt(p2 * (1 - p2) / d)).max() > 10


def _data(seed, sigma=0.7, coupling=0.8, n=16, big_r=3):
    model = LongRangeChain.power_law(n, 3, coupling=coupling, alpha=1 + sigma, max_distance=big_r,
                                     field=[0.2, 0.0, -0.1])
    run = simulate(model, "heat-bath", 2400, n_chains=4, n_burnin=200, rng=seed, save_every=8)
    return run.samples.reshape(-1, n)


@pytest.mark.parametrize("seed", [11, 12])
def test_recovers_planted_coupling_and_sigma_and_agrees_with_pseudo_likelihood(seed):
    x = _data(seed)
    fit = PowerLawMaxLikelihood(max_range=3).fit(x, n_states=3)
    pl = fit.pseudo_likelihood_
    assert fit.success_ and fit.result_.success and fit.max_gradient_ <= fit.grad_tol
    assert fit.result_.objective == "likelihood" and fit.result_.n_parameters == 5
    z_j = (fit.coupling_ - 0.8) / fit.coupling_stderr_
    z_s = (fit.sigma_ - 0.7) / fit.sigma_stderr_
    assert abs(z_j) <= 4 and abs(z_s) <= 4, (fit.coupling_, fit.coupling_stderr_, fit.sigma_, fit.sigma_stderr_)
    # both estimators are consistent: on the same data they differ by much less than their errors
    assert abs(fit.coupling_ - pl.coupling_) <= fit.coupling_stderr_
    assert abs(fit.sigma_ - pl.sigma_) <= fit.sigma_stderr_
    # the exact likelihood is maximised: the pseudo-likelihood start scores no higher (up to the fields' prior)
    assert fit.log_likelihood_ >= pl.log_likelihood(x).sum() / x.size - 1e-6
    np.testing.assert_allclose(fit.log_likelihood(x).sum() / x.size, fit.log_likelihood_, rtol=1e-10)


def test_negative_control_other_sigma_is_rejected():
    fit = PowerLawMaxLikelihood(max_range=3).fit(_data(13, sigma=-0.3), n_states=3)
    assert fit.success_ and abs(fit.sigma_ - 0.7) / fit.sigma_stderr_ > 5


def test_not_converged_is_flagged():
    x = _data(14)
    with pytest.warns(ConvergenceWarning):
        fit = PowerLawMaxLikelihood(max_range=3, max_iter=1).fit(x, n_states=3)
    assert not fit.success_ and not fit.result_.success
    assert np.isnan(fit.result_.coupling_stderr) and "did not converge" in fit.result_.stderr_message
    with pytest.warns(ConvergenceWarning):
        strict = PowerLawMaxLikelihood(max_range=3, grad_tol=1e-14).fit(x, n_states=3)
    assert not strict.success_ and "grad_tol" in strict.message_


def test_range_one_leaves_sigma_unidentified():
    fit = PowerLawMaxLikelihood(max_range=1).fit(_data(15)[:300], n_states=3)
    assert np.isnan(fit.sigma_) and "not identified" in fit.result_.stderr_message


def test_pseudo_likelihood_has_the_result_interface():
    fit = PowerLawPseudoLikelihood(max_range=3).fit(_data(16)[:300], n_states=3)
    assert fit.result_.objective == "pseudo-likelihood" and fit.result_.n_parameters == 5
    assert fit.result_.success == fit.success_ and fit.result_.coupling == fit.coupling_


@pytest.mark.slow
def test_decomposition_row_by_max_likelihood_stores_its_correlation():
    """The +power-law couplings row fitted by exact maximum likelihood; its model C(r) (exact draws
    given the test tokens) agrees with the test data's, which were drawn from a power-law chain."""
    from ising_moe.fit.pipeline.decomposition import decompose_layer

    n, q = 6, 4
    model = LongRangeChain.power_law(n, q, coupling=0.9, alpha=1.4, field=0.3 * np.cos(np.arange(q)))
    x = simulate(model, "heat-bath", 1000, n_chains=4, n_burnin=100, rng=21, save_every=10).samples.reshape(-1, n)
    tokens = np.random.default_rng(22).integers(0, 5, size=x.shape)
    dec = decompose_layer(x, np.ones(x.shape, bool), np.full(len(x), n), tokens, q, 0, seed=1, token_rows=6,
                          max_components=2, gof_distance=4, power_law=True, power_law_method="max-likelihood")
    info = dec.power_law
    assert info["method"] == "max-likelihood" and info["success"], info
    c = info["correlation"]
    z = (np.array(c["model"]) - c["empirical"]) / np.hypot(c["model_errors"], c["errors"])
    assert c["distances"] == [1, 2, 3, 4] and np.abs(z).max() <= 5, z
    g, e = dec.gain_of("+power-law couplings")
    assert np.isfinite(g) and np.isfinite(e)
