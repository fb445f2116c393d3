"""Power-law couplings fitted by pseudo-likelihood: exact likelihood against enumeration, recovery of
planted (J, sigma) within the sandwich errors with a negative control, model C(r) against the data's."""

import itertools

import numpy as np
import pytest

from ising_moe import PowerLawChain
from ising_moe.fit.power_law import PowerLawPseudoLikelihood, exact_range
from ising_moe.mc import simulate


def _brute_log_likelihood(fit, x, tok, mask, length):
    q, n = fit.n_states_, length
    conf = np.array(list(itertools.product(range(q), repeat=n)))
    phi = fit.site_fields(tok, n)
    e = phi[np.arange(n), conf].sum(axis=1)
    for d in range(1, min(fit.max_range_, n - 1) + 1):
        e += fit.coupling_ * d ** -(1 + fit.sigma_) * (conf[:, :-d] == conf[:, d:]).sum(axis=1)
    seen = mask[:n]
    ok = np.all(conf[:, seen] == x[:n][seen], axis=1)
    return np.logaddexp.reduce(e[ok]) - np.logaddexp.reduce(e)


@pytest.mark.parametrize("max_range", [1, 2, 5])
def test_exact_likelihood_against_enumeration(max_range):
    """Hidden sites inside the length summed over, shorter lengths, token and position fields."""
    rng = np.random.default_rng(0)
    q, n, s = 3, 6, 30
    x = rng.integers(0, q, size=(s, n))
    tok = rng.integers(0, 5, size=(s, n))
    mask = rng.random((s, n)) > 0.2
    lengths = rng.integers(3, n + 1, size=s)
    mask &= np.arange(n)[None] < lengths[:, None]
    fit = PowerLawPseudoLikelihood(max_range=max_range, position=True, token_rows=3, sigma_bounds=(-0.9, 3)).fit(
        x, tok, mask, lengths, n_states=q, init={"coupling": 0.4, "sigma": 0.5})
    ll = fit.log_likelihood(x, tok, mask, lengths)
    brute = [_brute_log_likelihood(fit, x[k], tok[k], mask[k], lengths[k]) for k in range(s)]
    np.testing.assert_allclose(ll, brute, rtol=1e-10)


def test_exact_range_limits_the_windows():
    assert exact_range(8) == 4 and exact_range(64) == 1 and exact_range(2) == 8
    with pytest.raises(Exception, match="max_range"):
        PowerLawPseudoLikelihood().fit(np.zeros((3, 5), int), n_states=2).log_likelihood(np.zeros((3, 5), int))


def _samples(sigma, seed, n=48, coupling=0.6):
    model = PowerLawChain.potts(n, 3, coupling=coupling, sigma=sigma, field=[0.2, 0.0, -0.1])
    run = simulate(model, "swendsen-wang", 4000, n_chains=4, n_burnin=200, rng=seed, save_every=10)
    return run.samples.reshape(-1, n)


@pytest.fixture(scope="module")
def planted():
    x = _samples(0.8, 5)
    return x, PowerLawPseudoLikelihood().fit(x, n_states=3)


def test_recovers_planted_coupling_and_sigma(planted):
    x, fit = planted
    z_j = (fit.coupling_ - 0.6) / fit.coupling_stderr_
    z_s = (fit.sigma_ - 0.8) / fit.sigma_stderr_
    assert fit.success_ and abs(z_j) <= 4 and abs(z_s) <= 4, (fit.coupling_, fit.coupling_stderr_, fit.sigma_,
                                                                 fit.sigma_stderr_)
    centred = fit.bias_ - fit.bias_.mean()
    np.testing.assert_allclose(centred, np.array([0.2, 0.0, -0.1]) - 0.1 / 3, atol=0.05)
    # negative control: data with another sigma are told apart by the same errors
    other = PowerLawPseudoLikelihood().fit(_samples(0.3, 6), n_states=3)
    assert abs(other.sigma_ - 0.8) / other.sigma_stderr_ > 5


def test_model_correlation_matches_the_data(planted):
    from ising_moe.measure import correlation_function

    x, fit = planted
    model_c, model_err = fit.model_correlation_function(6, n_sweeps=3000, rng=2)
    emp = correlation_function(x, np.ones_like(x, bool), 3, 6, (), 0, np.random.default_rng(0))
    c, se = emp.values, emp.errors
    z = (model_c[1:7] - c[1:7]) / np.hypot(model_err[1:7], se[1:7])
    assert np.abs(z).max() <= 5, z


@pytest.mark.slow
def test_decomposition_row_gains_on_power_law_data():
    """Data drawn from a power-law chain: the +power-law couplings row beats nearest-neighbour
    couplings on held-out sequences; on nearest-neighbour data (negative control) it gains nothing."""
    from ising_moe.fit.pipeline.decomposition import decompose_layer

    n, q = 16, 4
    model = PowerLawChain.potts(n, q, coupling=0.9, sigma=0.3, field=0.3 * np.cos(np.arange(q)))
    run = simulate(model, "swendsen-wang", 2000, n_chains=4, n_burnin=200, rng=8, save_every=5)
    x = run.samples.reshape(-1, n)
    tokens = np.random.default_rng(9).integers(0, 6, size=x.shape)
    dec = decompose_layer(x, np.ones(x.shape, bool), np.full(len(x), n), tokens, q, 0, seed=1, token_rows=8,
                          max_components=2, gof_distance=6, power_law=True)
    g, e = dec.gain_of("+power-law couplings")
    assert g > 5 * e, (g, e)
    assert dec.power_law["max_range"] == exact_range(q) and abs(dec.power_law["sigma"] - 0.3) < 0.3
    assert "power-law couplings" in dec.sentence()

    from ising_moe import PottsChain, exact
    nn = PottsChain.potts(n, q, coupling=0.9, field=0.3 * np.cos(np.arange(q)))
    x = exact.sample(nn, len(x), rng=10)
    dec = decompose_layer(x, np.ones(x.shape, bool), np.full(len(x), n), tokens, q, 0, seed=1, token_rows=8,
                          max_components=2, gof_distance=6, power_law=True)
    g, e = dec.gain_of("+power-law couplings")
    assert g < 3 * e, (g, e)
