import numpy as np
import pytest

from ising_moe import stats
from ising_moe.errors import InvalidParameterError


def ar1(phi, n, n_chains=1, seed=0):
    rng = np.random.default_rng(seed)
    eps = rng.normal(size=(n_chains, n))
    x = np.empty_like(eps)
    x[:, 0] = eps[:, 0] / np.sqrt(1 - phi**2)
    for t in range(1, n):
        x[:, t] = phi * x[:, t - 1] + eps[:, t]
    return x


@pytest.mark.parametrize("phi", [0.0, 0.5, 0.9, 0.97])
def test_integrated_time_of_ar1(phi):
    x = ar1(phi, 200_000, n_chains=2, seed=int(phi * 100))
    tau_exact = (1 + phi) / (1 - phi)
    assert stats.integrated_time(x) == pytest.approx(tau_exact, rel=0.1)


def test_errors_are_calibrated_on_ar1():
    phi = 0.9
    x = ar1(phi, 50_000, n_chains=4, seed=3)
    s = stats.estimate(x)
    var = 1 / (1 - phi**2)
    true_err = np.sqrt(var * (1 + phi) / (1 - phi) / x.size)
    assert s.error == pytest.approx(true_err, rel=0.15)
    assert stats.blocking_error(x) == pytest.approx(true_err, rel=0.25)
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
