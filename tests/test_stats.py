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


def test_constant_series_has_no_error_and_a_rule_of_three_limit():
    """Issue 20: a constant series got tau = 1, error 0 and no flag (z = inf against anything)."""
    never = stats.estimate(np.zeros((4, 500)), bounds=(0.0, 1.0), tau_constant=2.0)
    assert np.isnan(never.error) and np.isnan(never.tau) and not never.varied
    assert never.limit == pytest.approx(3 * 2.0 / 2000)  # rule of three: 3 / n_eff
    assert np.isnan(never.z_score(0.01)) and never.problems() == ["no variation: error not estimable (never seen)"]
    assert never.value_text() == "< 0.0030 (never seen)" and "±" not in str(never)
    always = stats.estimate(np.ones((4, 500)), bounds=(0.0, 1.0))  # no tau given: one sample per chain
    assert always.limit == pytest.approx(1 - 3 / 4) and always.value_text().startswith("> 0.25")
    free = stats.estimate(np.full((2, 100), -3.5))  # no bounds: no limit, still flagged
    assert np.isnan(free.limit) and free.problems() == ["no variation: error not estimable"]
    assert free.value_text() == "-3.5 (no variation)"


def test_short_series_flagged_with_a_conservative_tau():
    """AR(1), phi = 0.5 (tau = 3), one chain of 100 samples: n / tau = 33 < 50, but the estimated
    tau is often below 2 and the old flag (estimated tau) missed 17% of such series, whose errors
    covered 83% instead of 95%. The flag uses tau plus twice its statistical error."""
    missed = [not stats.estimate(ar1(0.5, 100, seed=seed)).problems() for seed in range(200)]
    assert np.mean(missed) <= 0.02
    old = [stats.estimate(ar1(0.5, 100, seed=seed)).n_over_tau >= stats.MIN_N_OVER_TAU for seed in range(200)]
    assert np.mean(old) >= 0.1  # the old rule, for comparison
    # negative control: long white-noise and AR(1) series are not flagged
    assert not any(stats.estimate(ar1(phi, 3000, n_chains=4, seed=seed)).problems()
                   for phi in (0.0, 0.5) for seed in range(20))


def _telegraph(p_on, p_off, n, n_chains, seed):
    rng = np.random.default_rng(seed)
    x = np.zeros((n_chains, n))
    for c in range(n_chains):
        t, on = 0, False
        while t < n:
            length = int(rng.geometric(p_off if on else p_on))
            x[c, t: t + length] = on
            t, on = t + length, not on
    return x


def test_rare_excursions_flagged_by_the_events_rule():
    """A rare state visited in a few excursions of ~5 samples: the old flags (n/tau ~ 1e3, R-hat ~1)
    passed means like 0.000050 ± 0.000022 against 0.000226 (z = -7.9). Fewer than 25 effective
    events behind a mean near its bound are flagged; with hundreds of excursions nothing is."""
    n, chains, p_off = 20_000, 4, 0.2
    for expected, flagged_min, flagged_max in ((5, 1.0, 1.0), (1000, 0.0, 0.0)):
        p_on = expected / (n * chains)
        runs = [stats.estimate(_telegraph(p_on, p_off, n, chains, seed), bounds=(0.0, 1.0)) for seed in range(30)]
        flagged = np.mean([any("few events" in p for p in s.problems()) for s in runs])
        assert flagged_min <= flagged <= flagged_max
        if expected == 5:
            assert max(s.n_over_tau for s in runs if s.varied) > stats.MIN_N_OVER_TAU  # the old flag is silent


def test_between_chain_test_is_calibrated_and_sees_a_shifted_chain():
    p = np.array([stats.chains_p_value(ar1(0.7, 2000, n_chains=4, seed=seed)) for seed in range(200)])
    assert 0.0 <= np.mean(p < 0.05) <= 0.12 and np.mean(p < stats.MIN_CHAINS_P) <= 0.02
    x = ar1(0.7, 20_000, n_chains=4, seed=1)
    x[3] += 0.12  # one chain off by ~5 errors of a chain mean (0.024): R-hat, not scaled by tau, is blind
    assert stats.chains_p_value(x) < stats.MIN_CHAINS_P and stats.split_rhat(x) < stats.MAX_RHAT
    assert any("chains disagree" in p for p in stats.estimate(x).problems())
    assert np.isnan(stats.chains_p_value(ar1(0.7, 100)))
