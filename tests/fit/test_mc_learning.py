"""The generic Monte Carlo learning driver on a model with a closed-form maximum likelihood.

Model: ``C`` independent categorical units (q states, natural parameters ``theta`` in the zero-sum
basis); the "sampler" draws every chain exactly, so the persistent chains are trivially at
equilibrium and the fixed point is the closed-form ML estimate (log frequencies).
"""

import numpy as np

from ising_moe.fit.mc_learning import mc_learning
from ising_moe.fit.params import zero_sum_basis

Q = 4


def _problem(seed=0, n_units=400):
    rng = np.random.default_rng(seed)
    b = zero_sum_basis(Q)
    true_p = np.array([0.4, 0.3, 0.2, 0.1])
    data = rng.choice(Q, size=n_units, p=true_p)
    freq = np.bincount(data, minlength=Q) / n_units
    ml = b.T @ np.log(freq)  # zero-sum log frequencies: the ML natural parameters
    data_moments = freq @ b

    def model_moments(theta, gen):
        logits = b @ theta
        p = np.exp(logits - logits.max())
        p /= p.sum()
        phi = b[gen.choice(Q, size=n_units, p=p)]
        return phi.mean(axis=0), phi.var(axis=0), gen

    return ml, data_moments, model_moments


def test_converges_to_the_closed_form_ml_within_its_errors():
    ml, data_moments, model_moments = _problem()
    res, _ = mc_learning(np.zeros(Q - 1), data_moments, model_moments, np.random.default_rng(1), step=0.5,
                         window=200, n_batches=10)
    assert res.success, res.message
    z = (res.theta - ml) / res.theta_stderr
    assert np.abs(z).max() <= 5, z


def test_a_drifting_window_is_not_stationary():
    """Negative control: far from the optimum with a tiny step, the parameters still drift at the
    end of the only window, and the rule must say so."""
    ml, data_moments, model_moments = _problem()
    res, _ = mc_learning(ml + 3.0, data_moments, model_moments, np.random.default_rng(1), step=0.002, window=100,
                         n_batches=10, max_windows=1)
    assert not res.success
    assert res.z2[-1] > res.threshold


def test_identical_for_a_seed():
    ml, data_moments, model_moments = _problem()
    runs = [mc_learning(np.zeros(Q - 1), data_moments, model_moments, np.random.default_rng(4), window=60,
                        n_batches=6)[0].theta for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])


def test_a_drifting_block_is_not_averaged_away():
    """Three slowly drifting coordinates (t^2 ~ 10-90) beside 2000 that are pure noise: the mean over
    all of them passes (the old rule); the per-block rule must not."""
    ml, data_moments, model_moments = _problem()
    n_noise = 2000

    def moments(theta, gen):
        mean, var, gen = model_moments(theta[: Q - 1], gen)
        noise = gen.normal(size=n_noise) * 0.05
        return np.r_[mean, noise], np.r_[var, np.full(n_noise, 1.0)], gen

    start = np.r_[ml + 0.1, np.zeros(n_noise)]
    data = np.r_[data_moments, np.zeros(n_noise)]
    kwargs = dict(step=0.002, window=100, n_batches=10, max_windows=1)
    pooled, _ = mc_learning(start, data, moments, np.random.default_rng(1), **kwargs)
    blocked, _ = mc_learning(start, data, moments, np.random.default_rng(1), blocks=[slice(0, Q - 1),
                                                                                     slice(Q - 1, None)], **kwargs)
    assert pooled.success  # the old rule: drift diluted by the noise coordinates
    assert not blocked.success
