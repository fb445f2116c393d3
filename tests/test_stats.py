import numpy as np
import pytest
from scipy.signal import lfilter

from ising_moe import stats
from ising_moe.errors import InvalidParameterError


def ar1(phi, n, n_chains=1, seed=0):
    """Stationary AR(1) ``x_t = phi x_{t-1} + eps_t`` (unit innovations)."""
    rng = np.random.default_rng(seed)
    eps = rng.normal(size=(n_chains, n))
    eps[:, 0] /= np.sqrt(1 - phi**2)
    return lfilter([1.0], [1.0, -phi], eps, axis=1)


@pytest.mark.parametrize("phi", [-0.9, -0.5, 0.0, 0.5, 0.9, 0.97])
def test_integrated_time_of_ar1(phi):
    x = ar1(phi, 1_000_000, n_chains=2, seed=int(abs(phi) * 100))
    tau_exact = (1 + phi) / (1 - phi)  # 0.0526 at phi = -0.9: the old window estimate gave 1e-12
    # Geyer's truncation drops a tail of size ~ its resolution: 0.004 at phi = -0.9 for this N
    assert stats.integrated_time(x) == pytest.approx(tau_exact, rel=0.1, abs=0.005)


@pytest.mark.parametrize("phi", [-0.9, -0.5, 0.5])
def test_errors_calibrated_over_seeds_including_anticorrelated(phi):
    """z of the mean over 40 independent AR(1) series: sd ~ 1, none beyond 5; a collapsed error
    (the old 1e-12 floor) or the naive tau = 1 fails the same test."""
    z, z_naive = [], []
    for seed in range(40):
        x = ar1(phi, 4000, n_chains=2, seed=seed)
        s = stats.estimate(x)
        z.append(s.z_score(0.0))
        z_naive.append(x.mean() / (x.std() / np.sqrt(x.size)))
    z, z_naive = np.array(z), np.array(z_naive)
    assert np.abs(z).max() <= 5 and 0.7 <= z.std() <= 1.35, z
    assert not (0.7 <= z_naive.std() <= 1.35)  # negative control


def test_period_two_series_keeps_a_finite_error():
    """Whole-chain flips each sweep: x alternates +-a around the mean plus noise. The mean of an
    even number of samples carries only the noise: error sigma / sqrt(N), not ~0."""
    rng = np.random.default_rng(4)
    n, a, sigma = 20_000, 1.0, 0.3
    sign = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    x = 0.6 + a * sign + sigma * rng.normal(size=(2, n))
    s = stats.estimate(x)
    assert s.error == pytest.approx(sigma / np.sqrt(x.size), rel=0.1)


def test_errors_are_calibrated_on_ar1():
    phi = 0.9
    x = ar1(phi, 50_000, n_chains=4, seed=3)
    s = stats.estimate(x)
    var = 1 / (1 - phi**2)
    true_err = np.sqrt(var * (1 + phi) / (1 - phi) / x.size)
    assert s.error == pytest.approx(true_err, rel=0.15)
    assert abs(s.z_score(0.0)) <= 5
    # negative control: the naive error (tau = 1) is too small by sqrt(tau) ~ 4.4
    naive = x.std() / np.sqrt(x.size)
    assert naive < s.error / 3


def test_split_rhat_detects_disagreeing_chains():
    x = ar1(0.5, 4000, n_chains=4, seed=1)
    assert stats.split_rhat(x) == pytest.approx(1.0, abs=0.02)
    shifted = x + np.array([[0.0], [0.0], [0.0], [2.0]])
    assert stats.split_rhat(shifted) > 1.2


def test_stats_string_and_ess():
    x = ar1(0.0, 10_000, n_chains=2, seed=2)
    s = stats.estimate(x)
    assert s.ess == pytest.approx(x.size, rel=0.1)
    assert "±" in str(s) and "tau=" in str(s) and "ess=" in str(s)


def test_bad_input():
    with pytest.raises(InvalidParameterError):
        stats.estimate([1.0])
    with pytest.raises(InvalidParameterError):
        stats.estimate([[1.0, np.nan, 2.0]])
    assert stats.integrated_time(np.ones(100)) == pytest.approx(1.0)
