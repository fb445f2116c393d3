"""Standard errors of the fitters (full covariance, lazy, banded), the Potts coupling, mean field."""

import itertools
import pickle
import warnings

import numpy as np
import pytest

from ising_moe import PottsChain, exact
from ising_moe.fit import (
    ChainData,
    ChainMaxLikelihood,
    ChainMeanField,
    IndependentSites,
    information,
)
from ising_moe.fit.likelihood import _MLObjective


def _brute_force_entry_errors(fit, n_sequences):
    """Per-entry errors from an independent Fisher matrix: the covariance of the sufficient
    statistics under the fitted chain, by enumerating every configuration (no finite differences,
    no transfer matrices), then the delta method with the explicit Jacobian of every entry."""
    par = fit.parametrization_
    n, q, p = par.n_sites, par.n_states, par.n_params
    h, j = fit.fields_, fit.couplings_[0, 0]
    confs = np.array(list(itertools.product(range(q), repeat=n)))
    sites = np.arange(n)
    log_w = h[sites, confs].sum(axis=1) + j[confs[:, :-1], confs[:, 1:]].sum(axis=1)
    prob = np.exp(log_w - log_w.max())
    prob /= prob.sum()
    # sufficient statistics: d(-E)/d theta_k for every configuration (-E is linear in theta)
    stats = np.empty((len(confs), p))
    for k in range(p):
        hk, jk = par.expand(np.eye(p)[k])
        stats[:, k] = hk[sites, confs].sum(axis=1) + jk[0, 0][confs[:, :-1], confs[:, 1:]].sum(axis=1)
    mean = prob @ stats
    fisher = n_sequences * ((stats * prob[:, None]).T @ stats - np.outer(mean, mean))
    cov = np.linalg.inv(fisher + fit.l2 * np.eye(p))
    jac_h = np.stack([par.expand(e)[0].ravel() for e in np.eye(p)], axis=1)
    jac_j = np.stack([par.expand(e)[1].ravel() for e in np.eye(p)], axis=1)
    full = [np.sqrt(np.einsum("ek,kl,el->e", a, cov, a)) for a in (jac_h, jac_j)]
    diagonal_only = [np.sqrt((a**2) @ np.diag(cov)) for a in (jac_h, jac_j)]  # covariances dropped
    return full, diagonal_only


@pytest.mark.parametrize("couplings", ["potts", "full"])
def test_entry_errors_equal_brute_force_fisher(couplings):
    rng = np.random.default_rng(0)
    n, q = 5, 3
    model = PottsChain(n, np.array([[0.8, -0.3, 0.1], [-0.3, 0.5, 0.0], [0.1, 0.0, 0.9]]),
                       0.7 * rng.normal(size=(n, q)))
    x = exact.sample(model, 400, rng=1)
    fit = ChainMaxLikelihood(couplings=couplings, l2=0.1).fit(x)
    (h_ref, j_ref), (h_diag, _) = _brute_force_entry_errors(fit, len(x))
    np.testing.assert_allclose(fit.result_.fields_stderr.ravel(), h_ref, rtol=1e-5)
    np.testing.assert_allclose(fit.result_.couplings_stderr.ravel(), j_ref, rtol=1e-5, atol=1e-12)
    # the old expansion (covariances between a group's parameters dropped) is off entry by entry
    assert np.max(np.abs(h_diag / h_ref - 1)) > 0.1


@pytest.mark.parametrize("couplings,smoothing", [("potts", 0.0), ("full", 2.0)])
def test_banded_fisher_and_covariance_equal_dense(couplings, smoothing):
    rng = np.random.default_rng(1)
    n, q = 60, 3
    model = PottsChain.potts(n, q, coupling=0.7, field=0.5 * rng.normal(size=(n, q)))
    x = exact.sample(model, 300, rng=2)
    lengths = rng.integers(45, n + 1, size=len(x))  # several length classes
    fit = ChainMaxLikelihood(couplings=couplings, field_smoothing=smoothing).fit(x, lengths=lengths)
    obj = _MLObjective(ChainData.from_arrays(x, lengths=lengths), fit.parametrization_, 0.1, smoothing)
    theta = fit.result_.theta
    assert information._band(obj, theta) is not None  # the banded path is the one tested
    banded = information.fisher_information(obj, theta)
    dense = information.fisher_information(obj, theta, dense=True)
    np.testing.assert_allclose(banded, dense, atol=1e-9 * np.abs(dense).max())
    fast, _ = information.parameter_covariance(obj, theta)
    slow, _ = information.parameter_covariance(obj, theta, dense=True)
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-12 * np.abs(b).max())


def test_standard_errors_are_lazy_and_picklable(monkeypatch):
    calls = []
    original = information.parameter_covariance

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr("ising_moe.fit.max_likelihood.parameter_covariance", counting)
    x = exact.sample(PottsChain.potts(30, 3, coupling=0.5), 200, rng=3)
    fit = ChainMaxLikelihood(couplings="potts").fit(x)
    assert calls == []  # the fit itself does not compute them
    err = fit.result_.couplings_stderr
    assert calls == [1] and np.all(err[0, 0] > 0)
    assert fit.result_.fields_stderr.shape == (30, 3) and calls == [1]  # cached
    again = pickle.loads(pickle.dumps(fit.result_))
    np.testing.assert_array_equal(again.fields_stderr, fit.result_.fields_stderr)
    none = ChainMaxLikelihood(couplings="potts", standard_errors=False).fit(x)
    assert none.result_.fields_stderr is None


def test_potts_coupling_is_j_not_its_gauge_fixed_entry():
    q, j_true = 4, 1.1
    x = exact.sample(PottsChain.potts(40, q, coupling=j_true), 3000, rng=4)
    fit = ChainMaxLikelihood(couplings="potts", l2=1e-6).fit(x)
    err = fit.result_.couplings_stderr[0, 0, 0, 0] / (1 - 1 / q)
    assert abs(fit.potts_coupling_ - j_true) < 5 * err
    assert fit.couplings_[0, 0, 0, 0] == pytest.approx(fit.potts_coupling_ * (1 - 1 / q), rel=1e-12)
    full = ChainMaxLikelihood(couplings="full", l2=1e-6, standard_errors=False).fit(x)
    assert abs(full.potts_coupling_ - j_true) < 0.1  # the Potts projection of a full matrix
    assert np.isnan(IndependentSites().fit(x).potts_coupling_)


def test_mean_field_is_well_posed_with_fewer_sequences_than_variables():
    # N = 60 sequences, n (q - 1) = 64 * 7 = 448 variables: the sample correlation matrix is singular
    rng = np.random.default_rng(5)
    model = PottsChain.potts(64, 8, coupling=0.8, field=0.3 * rng.normal(size=(64, 8)))
    x = exact.sample(model, 60, rng=6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = ChainMeanField(couplings="potts").fit(x)
    assert 0 < fit.shrinkage_ < 1 and np.all(np.isfinite(fit.fields_))
    assert 0 < fit.potts_coupling_ < 2 * 0.8  # shrunk towards 0, same sign; unshrunk: |J| ~ 1e2-1e3
    raw = ChainMeanField(couplings="potts", shrinkage=0.0).fit(x)
    assert abs(raw.potts_coupling_) > 10 * abs(fit.potts_coupling_)
    # independent data: (nearly) everything is shrunk away
    noise = rng.integers(0, 8, size=(60, 64))
    assert ChainMeanField(couplings="potts").fit(noise).shrinkage_ > 0.9


def test_banded_kernels_equal_dense_linear_algebra_and_py_func():
    from ising_moe.fit._linalg_kernels import banded_cholesky, banded_inverse_band

    rng = np.random.default_rng(7)
    n, u = 30, 4
    a = np.zeros((n, n))
    for d in range(u + 1):
        v = rng.normal(size=n - d)
        a[np.arange(d, n), np.arange(n - d)] = v
        a[np.arange(n - d), np.arange(d, n)] = v
    a += (np.abs(a).sum(axis=1).max() + 1) * np.eye(n)  # diagonally dominant: positive definite
    ab = np.array([np.concatenate([np.diagonal(a, -d), np.zeros(d)]) for d in range(u + 1)])
    chol, inv = np.linalg.cholesky(a), np.linalg.inv(a)
    for fn_chol, fn_inv in ((banded_cholesky, banded_inverse_band),
                            (banded_cholesky.py_func, banded_inverse_band.py_func)):
        cb, band = np.zeros_like(ab), np.zeros_like(ab)
        assert fn_chol(ab, cb)
        fn_inv(cb, band)
        for d in range(u + 1):
            np.testing.assert_allclose(cb[d, : n - d], np.diagonal(chol, -d), rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(band[d, : n - d], np.diagonal(inv, -d), rtol=1e-10, atol=1e-14)
    ab[0, 5] = -1.0  # not positive definite
    assert not banded_cholesky(ab, np.zeros_like(ab))
