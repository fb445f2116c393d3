"""The 2D lattice samplers (layers x positions, conditional on tokens) against exact results.

- ergodicity: one long chain per update from a fixed start reaches the exact distribution of a tiny
  lattice (chi-square against enumeration); the same samples against another beta's distribution
  must be rejected (negative control);
- calibration: per-sweep sufficient statistics of several chains against the exact column
  solver's expectations, z-scores with autocorrelation-aware errors, |z| <= 5, and the same runs
  against the exact values at another beta fail;
- the jitted kernel and its Python version draw the same chains for one seed.
"""

import itertools

import numpy as np
import pytest
from oracles import chi_square_pvalue

from ising_moe.fit.lattice import ExactLattice, LatticeData, LatticeLayout
from ising_moe.mc import _lattice_kernels as LK
from ising_moe.mc.lattice import LatticeState, LatticeTarget, sample, sweep, transposed
from ising_moe.stats import estimate

P_MIN = 1e-6


def _layout_theta(q, lam, seed, n_rows=2, scale=0.7):
    lay = LatticeLayout(lam, q, n_rows=n_rows, couplings="full", cross_range=lam - 1)
    theta = scale * np.random.default_rng(seed).normal(size=lay.n_params)
    return lay, theta


def _target(lay, theta, rows, lengths, beta=1.0):
    p = lay.expand(beta * np.asarray(theta))
    return LatticeTarget(p["token"], p["coupling"], p["cross"], lay.pairs, rows, lengths)


def _enumerate(lay, theta, rows, n):
    q, lam = lay.n_states, lay.n_layers
    conf = np.array(list(itertools.product(range(q), repeat=lam * n)), dtype=np.int64).reshape(-1, lam, n)
    lw = lay.log_weights(theta, conf, np.repeat(rows[None], len(conf), 0), np.full(len(conf), n))
    return conf, np.exp(lw - np.logaddexp.reduce(lw))


@pytest.mark.parametrize("update,q", [("heat-bath", 2), ("heat-bath", 3), ("metropolis", 2), ("metropolis", 3)])
def test_fixed_start_reaches_exact_distribution(update, q):
    lam, n = 2, 3
    lay, theta = _layout_theta(q, lam, seed=q)
    rows = np.array([[0, 1, 0]])
    target = _target(lay, theta, rows, np.array([n]))
    state = LatticeState(np.zeros((1, lam, n), np.int64),
                         np.random.default_rng(3).integers(1, 2**63, size=(1, 4), dtype=np.uint64))
    samples, _ = sample(target, 6000, thin=6, n_burnin=0, update=update, state=state)
    flat = samples[:, 0].reshape(len(samples), -1)
    _, p = _enumerate(lay, theta, rows[0], n)
    assert chi_square_pvalue(flat, p, q) > P_MIN
    _, p_wrong = _enumerate(lay, 0.5 * theta, rows[0], n)
    assert chi_square_pvalue(flat, p_wrong, q) < P_MIN


def _exact_means(lay, theta, rows, lengths):
    ex = ExactLattice(lay, theta)
    data = LatticeData.from_arrays(np.zeros((len(lengths), lay.n_layers, rows.shape[1]), np.int64), rows, lengths,
                                   lay.n_states)
    _, counts = ex.expected_counts(data)
    return lay.project(counts) / len(lengths)


@pytest.mark.parametrize("update", ["heat-bath", "metropolis"])
def test_sufficient_statistics_match_exact(update):
    q, lam, n, chains = 3, 3, 10, 8
    lay, theta = _layout_theta(q, lam, seed=11, n_rows=2, scale=0.5)
    rng = np.random.default_rng(5)
    rows = np.repeat(rng.integers(0, 2, size=(1, n)), chains, axis=0)  # every chain: one token sequence
    lengths = np.full(chains, n)
    target = _target(lay, theta, rows, lengths)
    state = sweep(target, LatticeState.initial(target, rng=1), 200, update)
    series = []
    for _ in range(1500):
        sweep(target, state, 1, update)
        series.append(lay.statistics_per_sequence(LatticeData(state.spins, rows, lengths, q)))
    series = np.stack(series, axis=1)  # (chains, sweeps, K)
    exact = _exact_means(lay, theta, rows[:1], lengths[:1])
    wrong = _exact_means(lay, 1.3 * theta, rows[:1], lengths[:1])
    z = np.array([estimate(series[:, :, k]).z_score(exact[k]) for k in range(lay.n_params)])
    z_wrong = np.array([estimate(series[:, :, k]).z_score(wrong[k]) for k in range(lay.n_params)])
    assert np.abs(z).max() <= 5, z
    assert 0.4 <= z.std() <= 1.8, z.std()
    assert np.abs(z_wrong).max() > 5


def test_kernel_matches_python_version():
    q, lam, n = 3, 2, 6
    lay, theta = _layout_theta(q, lam, seed=2)
    rows = np.array([[0, 1, 1, 0, 1, 0], [1, 1, 0, 0, 1, 0]])
    lengths = np.array([6, 4])
    target = _target(lay, theta, rows, lengths)
    out = []
    for fn in (LK.run_sweeps, LK.run_sweeps.py_func):
        for update in (LK.HEAT_BATH, LK.METROPOLIS):
            state = LatticeState.initial(target, rng=7)
            fn(state.spins, target.rows, target.lengths, state.rng_state, target.token, target.coupling,
               transposed(target.coupling), target.cross, transposed(target.cross), target.pairs, 20, update,
               state.accepted)
            out.append(state.spins.copy())
    np.testing.assert_array_equal(out[0], out[2])
    np.testing.assert_array_equal(out[1], out[3])


def test_positions_beyond_the_length_are_left_alone():
    lay, theta = _layout_theta(3, 2, seed=4)
    target = _target(lay, theta, np.zeros((2, 5), np.int64), np.array([5, 3]))
    state = LatticeState.initial(target, rng=0, start=np.zeros((2, 2, 5), np.int64))
    sweep(target, state, 50)
    assert (state.spins[1, :, 3:] == 0).all() and state.spins[0].any()
