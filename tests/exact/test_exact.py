"""Exact transfer-matrix results against brute-force enumeration and closed forms."""

import numpy as np
import pytest
from oracles import (
    brute_correlation_function,
    brute_joint,
    brute_marginals,
    chi_square_pvalue,
    enumerate_chain,
    random_chain,
)

from ising_moe import InvalidParameterError, PottsChain, exact
from ising_moe.errors import NumericalPrecisionWarning

CASES = [
    # (n_sites, n_states, periodic, homogeneous, per_bond)
    (7, 2, False, False, False),
    (7, 2, True, False, True),
    (6, 3, False, True, False),
    (6, 3, True, True, False),
    (5, 3, True, False, False),
    (5, 3, False, False, True),
    (10, 2, True, True, False),
    (10, 2, False, False, True),
    (2, 3, True, False, False),
    (3, 2, False, True, False),
]


@pytest.mark.parametrize("n_sites,n_states,periodic,homogeneous,per_bond", CASES)
def test_exact_matches_enumeration(n_sites, n_states, periodic, homogeneous, per_bond):
    rng = np.random.default_rng(hash((n_sites, n_states, periodic, homogeneous, per_bond)) % 2**32)
    model = random_chain(rng, n_sites, n_states, periodic, homogeneous, per_bond)
    conf, p, log_z = enumerate_chain(model)
    sol = exact.solve(model)
    assert sol.log_partition == pytest.approx(log_z, rel=1e-12, abs=1e-12)
    assert sol.free_energy == pytest.approx(-log_z / (model.beta * n_sites), rel=1e-12)
    marg = brute_marginals(conf, p, n_states)
    np.testing.assert_allclose(sol.marginals, marg, rtol=1e-12, atol=1e-14)
    for b in range(model.n_bonds):
        np.testing.assert_allclose(sol.pair_marginals[b], brute_joint(conf, p, n_states, b, (b + 1) % n_sites),
                                   rtol=1e-12, atol=1e-14)
    for i, j in [(0, n_sites - 1), (n_sites - 1, 0), (1, n_sites // 2 + 1)]:
        j = min(j, n_sites - 1)
        np.testing.assert_allclose(sol.joint_marginal(i, j), brute_joint(conf, p, n_states, i, j),
                                   rtol=1e-12, atol=1e-14)
        c_ref = np.diag(brute_joint(conf, p, n_states, i, j)) - marg[i] * marg[j]
        np.testing.assert_allclose(exact.indicator_correlation(model, i, j), c_ref, rtol=1e-11, atol=1e-14)
        assert exact.correlation(model, i, j) == pytest.approx(c_ref.sum(), rel=1e-11, abs=1e-14)
    max_distance = (n_sites - 1) if not periodic else n_sites - 1
    ref = brute_correlation_function(conf, p, n_states, max_distance, periodic)
    np.testing.assert_allclose(sol.correlation_function(max_distance, per_state=True), ref,
                               rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(sol.correlation_function(max_distance), ref.sum(axis=1), rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("bj", [0.1, 1.0, 5.0, 20.0, 50.0])
@pytest.mark.parametrize("n_sites", [3, 50, 1000])
def test_ising_zero_field_closed_form(bj, n_sites):
    model = PottsChain.ising(n_sites, coupling=1.0, beta=bj, periodic=True)
    # Z = (2 cosh bJ)^L + (2 sinh bJ)^L, written to avoid overflow
    ref = n_sites * np.log(2 * np.cosh(bj)) + np.log1p(np.tanh(bj) ** n_sites)
    assert exact.log_partition(model) == pytest.approx(ref, rel=1e-13)
    # xi = -1 / ln tanh(bJ) = 1 / (log1p(e^{-2bJ}) - log1p(-e^{-2bJ}))
    t = np.exp(-2 * bj)
    xi_ref = 1.0 / (np.log1p(t) - np.log1p(-t))
    assert exact.correlation_length(model) == pytest.approx(xi_ref, rel=1e-12)
    # open chain in zero field: Z = 2 (2 cosh bJ)^(L-1), same bulk xi
    open_model = model.replace(periodic=False)
    assert exact.log_partition(open_model) == pytest.approx(
        np.log(2) + (n_sites - 1) * np.log(2 * np.cosh(bj)), rel=1e-13)
    assert exact.correlation_length(open_model) == pytest.approx(xi_ref, rel=1e-12)


@pytest.mark.parametrize("q", [2, 3, 8, 64])
@pytest.mark.parametrize("bj", [0.3, 2.0, 30.0, 50.0])
def test_potts_zero_field_spectrum(q, bj):
    model = PottsChain.potts(40, q, coupling=1.0, beta=bj)
    lam0, lam1 = np.exp(bj) + q - 1, np.exp(bj) - 1
    ev = exact.transfer_eigenvalues(model)
    assert ev[0] == 1.0
    np.testing.assert_allclose(np.abs(ev[1:]), lam1 / lam0, rtol=1e-12)  # (q-1)-fold degenerate
    xi_ref = 1.0 / np.log1p(q / np.expm1(bj))  # ln(lam0 / lam1) without cancellation
    assert exact.correlation_length(model) == pytest.approx(xi_ref, rel=1e-12)


def test_ising_antiferromagnet_negative_eigenvalue():
    model = PottsChain.ising(30, coupling=-0.8, beta=1.0)
    ev = exact.transfer_eigenvalues(model)
    assert ev[1].real < 0
    assert exact.correlation_length(model) == pytest.approx(-1 / np.log(np.tanh(0.8)), rel=1e-12)
    # C(r) alternates in sign inside the envelope exp(-r / xi)
    c = exact.solve(model.replace(periodic=True, n_sites=200)).correlation_function(6)
    assert np.all(np.sign(c[1:]) == np.array([-1, 1, -1, 1, -1, 1]))


def test_bulk_correlation_decays_with_spectral_xi():
    model = PottsChain.potts(400, 4, coupling=1.3, field=[0.2, 0.0, -0.1, 0.3], periodic=True)
    sol = exact.solve(model)
    c = sol.correlation_function(30)
    xi = sol.correlation_length()
    # the decay of C(r) follows exp(-r / xi); the next mode (|lambda_2 / lambda_1| = 0.84) adds
    # a relative correction ~0.84^r to the local slope
    assert -1 / np.log(c[29] / c[28]) == pytest.approx(xi, rel=5e-3)
    assert abs(-1 / np.log(c[11] / c[10]) - xi) > abs(-1 / np.log(c[29] / c[28]) - xi)


def test_inhomogeneous_xi_estimate_from_decay():
    rng = np.random.default_rng(3)
    model = PottsChain.potts(300, 3, coupling=2.0, field=0.01 * rng.normal(size=(300, 3)))
    xi_hom = exact.correlation_length(model.replace(fields=np.zeros(3)))
    assert exact.correlation_length(model, max_distance=20) == pytest.approx(xi_hom, rel=0.05)


def test_long_chain_large_beta_no_overflow():
    n = 100_000
    model = PottsChain.potts(n, 8, coupling=1.0, beta=50.0)
    lz = exact.log_partition(model)
    # Z = q lam0^(n-1) (zero field, open): log exact to rounding
    ref = np.log(8) + (n - 1) * (50.0 + np.log1p(7 * np.exp(-50.0)))
    assert lz == pytest.approx(ref, rel=1e-14)
    periodic = model.replace(periodic=True)
    lam_ratio = np.log1p(-8 / (np.exp(50.0) + 7))
    ref_p = n * (50.0 + np.log1p(7 * np.exp(-50.0))) + np.log1p(7 * np.exp(n * lam_ratio))
    assert exact.log_partition(periodic) == pytest.approx(ref_p, rel=1e-14)
    m = exact.marginals(model)
    assert np.all(np.isfinite(m)) and np.allclose(m.sum(axis=1), 1)


@pytest.mark.parametrize("bj", [-0.5, -5.0, -18.0, -20.0, -50.0, -300.0, 20.0, 300.0])
def test_ising_correlation_length_closed_form_both_signs(bj):
    """xi = 1 / ln coth(beta |J|) for ferro- and antiferromagnets: finite at every beta (the
    antiferromagnet was reported infinite for beta J <= -18; 1.18e17 at -20)."""
    model = PottsChain.ising(11, coupling=bj, beta=1.0)
    t = np.exp(-2 * abs(bj))  # ln coth K = ln((1 + t) / (1 - t)), t = e^{-2K}
    xi_ref = 1.0 / (np.log1p(t) - np.log1p(-t))
    assert exact.correlation_length(model) == pytest.approx(xi_ref, rel=1e-12)


def test_degenerate_spectrum_warns():
    # two ferromagnetic blocks {0, 1}, {2, 3} joined by weights e^-600: lambda_1 / lambda_0 = 1 - O(e^-600)
    couplings = np.full((4, 4), -600.0)
    couplings[:2, :2] = couplings[2:, 2:] = [[50.0, -50.0], [-50.0, 50.0]]
    with pytest.warns(NumericalPrecisionWarning, match="degenerate"):
        assert exact.correlation_length(PottsChain(10, couplings)) == np.inf


def test_dynamic_range_guard():
    with pytest.raises(InvalidParameterError, match="underflow"):
        exact.log_partition(PottsChain.potts(10, 3, coupling=1.0, beta=800.0))
    with pytest.raises(InvalidParameterError, match="homogeneous"):
        exact.transfer_eigenvalues(PottsChain.potts(10, 3, field=np.zeros((10, 3))))


@pytest.mark.parametrize("periodic", [False, True])
def test_sampler_chi_square_with_negative_control(periodic):
    rng = np.random.default_rng(11)
    model = random_chain(rng, 5, 3, periodic, homogeneous=False, beta=1.0)
    _, p, _ = enumerate_chain(model)
    samples = exact.sample(model, 40_000, rng=5)
    assert samples.dtype == np.int32 and samples.shape == (40_000, 5)
    assert chi_square_pvalue(samples, p, 3) > 1e-4
    # negative control: samples of a different beta must be rejected by the same test
    wrong = exact.sample(model.replace(beta=1.3), 40_000, rng=5)
    assert chi_square_pvalue(wrong, p, 3) < 1e-10


def test_sampler_reproducible_and_independent_of_threads():
    import numba

    model = PottsChain.potts(50, 4, coupling=0.7, field=np.arange(4) * 0.1, periodic=True)
    a = exact.sample(model, 300, rng=42)
    b = exact.sample(model, 300, rng=np.random.default_rng(42))
    np.testing.assert_array_equal(a, b)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        c = exact.sample(model, 300, rng=42)
    finally:
        numba.set_num_threads(old)
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, exact.sample(model, 300, rng=43))


def test_rejects_wrong_model_type():
    from ising_moe import LongRangeChain

    with pytest.raises(InvalidParameterError, match="expected a PottsChain"):
        exact.solve(LongRangeChain(5, np.ones((2, 2, 2))))
