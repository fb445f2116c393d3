"""Monte Carlo against exact results: |z| <= 5 with autocorrelation-corrected errors, and a
negative control (exact values at 1.1 beta) that the same test must reject."""

import numba
import numpy as np
import pytest
from oracles import config_index, enumerate_chain

from ising_moe import InvalidParameterError, LongRangeChain, PottsChain, exact
from ising_moe.mc import ChainState, simulate
from ising_moe.mc import _kernels as K
from ising_moe.mc import _long_range_kernels as LRK
from ising_moe.mc.observables import exact_observables

MAX_R = 3


def z_scores(run, model):
    ref = exact_observables(model, MAX_R)
    ref.pop("energy_per_site")
    ref.pop("magnetisation", None)
    return {name: run.stats(name).z_score(value) for name, value in ref.items()}


def nn_cases():
    rng = np.random.default_rng(7)
    return {
        "ising-open-field": PottsChain.ising(48, coupling=0.8, field=0.2, beta=1.0),
        "potts3-periodic-posfields": PottsChain.potts(40, 3, coupling=1.0, field=0.5 * rng.normal(size=(40, 3)),
                                                      periodic=True),
        "potts8-periodic-strong": PottsChain.potts(32, 8, coupling=1.5, field=0.1 * np.arange(8), periodic=True,
                                                   beta=1.2),
        "general-perbond-open": PottsChain(36, 0.8 * rng.normal(size=(35, 4, 4)), 0.5 * rng.normal(size=4)),
    }


CLUSTER_OK = {"ising-open-field", "potts3-periodic-posfields", "potts8-periodic-strong"}


@pytest.mark.parametrize("update", ["metropolis", "metropolis-random", "heat-bath", "swendsen-wang", "wolff"])
@pytest.mark.parametrize("case", list(nn_cases()))
def test_nearest_neighbour_against_exact(update, case):
    model = nn_cases()[case]
    if update in ("swendsen-wang", "wolff") and case not in CLUSTER_OK:
        with pytest.raises(InvalidParameterError, match="Potts-form"):
            simulate(model, update, 10)
        return
    run = simulate(model, update, n_sweeps=3000, n_chains=4, n_burnin=200, rng=11, max_distance=MAX_R)
    z = z_scores(run, model)
    assert max(abs(v) for v in z.values()) <= 5, z
    assert max(run.stats(name).rhat for name in z) < 1.1
    # negative control: the same measurements against the exact values of 1.1 beta
    wrong = z_scores(run, model.replace(beta=1.1 * model.beta))
    assert max(abs(v) for v in wrong.values()) > 5, wrong


def lr_cases():
    return {
        "lr-ising-open-allpairs": LongRangeChain.power_law(9, 2, coupling=1.0, alpha=1.5, field=[0.0, 0.15],
                                                           beta=0.8),
        "lr-potts3-periodic-R3": LongRangeChain.power_law(8, 3, coupling=1.2, alpha=1.0, max_distance=3,
                                                          periodic=True),
        "lr-general-open": LongRangeChain(7, np.random.default_rng(3).normal(size=(3, 2, 2)), [0.2, -0.1]),
    }


@pytest.mark.parametrize("update", ["metropolis", "heat-bath", "wolff"])
@pytest.mark.parametrize("case", list(lr_cases()))
def test_long_range_against_enumeration(update, case):
    model = lr_cases()[case]
    if update == "wolff" and case == "lr-general-open":
        with pytest.raises(InvalidParameterError, match="distance"):
            simulate(model, update, 10)
        return
    run = simulate(model, update, n_sweeps=4000, n_chains=4, n_burnin=200, rng=5, max_distance=MAX_R)
    z = z_scores(run, model)
    assert max(abs(v) for v in z.values()) <= 5, z
    wrong = z_scores(run, model.replace(beta=1.1 * model.beta) if case != "lr-general-open"
                     else model.replace(beta=1.3))
    assert max(abs(v) for v in wrong.values()) > 5, wrong


def _one_sweep_transitions(model, update, n_repeats, seed):
    """Empirical one-sweep transition matrix of the *code*, from every configuration of a tiny chain."""
    conf, p, _ = enumerate_chain(model)
    counts = np.zeros((len(conf), len(conf)))
    for k, c in enumerate(conf):
        rng_state = np.random.default_rng(seed + k).integers(1, 2**63, size=(n_repeats, 4), dtype=np.uint64)
        state = ChainState(np.tile(c, (n_repeats, 1)).astype(np.int32), rng_state,
                           wolff_updates=np.ones(n_repeats, dtype=np.int64))
        run = simulate(model, update, n_sweeps=1, n_burnin=0, state=state, save_every=1)
        counts[k] = np.bincount(config_index(run.samples[:, 0], model.n_states), minlength=len(conf))
    return conf, p, counts / n_repeats


@pytest.mark.parametrize("update", ["metropolis", "metropolis-random", "heat-bath", "swendsen-wang", "wolff"])
@pytest.mark.parametrize("periodic", [False, True])
def test_one_sweep_leaves_boltzmann_invariant(update, periodic):
    model = PottsChain.potts(3, 2, coupling=0.9, field=[[0.3, 0.0], [0.0, 0.2], [-0.1, 0.4]], periodic=periodic)
    n_repeats = 20_000
    conf, p, trans = _one_sweep_transitions(model, update, n_repeats, seed=100)
    moved = p @ trans
    # binomial error of each transition probability, propagated to (p T)_j
    err = np.sqrt((p[:, None] ** 2 * trans * (1 - trans) / n_repeats).sum(axis=0)) + 1e-12
    assert np.max(np.abs(moved - p) / err) <= 5
    # negative control: the Boltzmann distribution of another beta is not invariant under it
    _, p_wrong, _ = enumerate_chain(model.replace(beta=2.0))
    assert np.max(np.abs(p_wrong @ trans - p_wrong) / err) > 5


def test_metropolis_transition_matrix_matches_analytic_kernel():
    """Sequential Metropolis: T = T_0 T_1 T_2 with T_i the single-site kernel; detailed balance of T_i."""
    model = PottsChain(3, np.array([[0.5, -0.2, 0.1], [0.0, 0.3, -0.4], [0.2, 0.1, 0.6]]), [0.1, -0.3, 0.2])
    conf, p, emp = _one_sweep_transitions(model, "metropolis", 20_000, seed=3)
    q = 3
    index = {tuple(c): k for k, c in enumerate(conf)}
    energy = model.energy(conf)
    total = np.eye(len(conf))
    for i in range(3):
        t = np.zeros((len(conf), len(conf)))
        for k, c in enumerate(conf):
            for a in range(q):
                if a == c[i]:
                    continue
                c2 = c.copy()
                c2[i] = a
                k2 = index[tuple(c2)]
                t[k, k2] = min(1.0, np.exp(-(energy[k2] - energy[k]))) / (q - 1)
            t[k, k] = 1 - t[k].sum()
        np.testing.assert_allclose(p[:, None] * t, (p[:, None] * t).T, atol=1e-15)  # detailed balance
        total = total @ t
    np.testing.assert_allclose(p @ total, p, atol=1e-14)
    err = np.sqrt(total * (1 - total) / 20_000) + 1e-12
    assert np.max(np.abs(emp - total) / err) <= 5


def _xoshiro_reference(state, n):
    mask = (1 << 64) - 1
    s = [int(x) for x in state]
    out = []
    rotl = lambda x, k: ((x << k) | (x >> (64 - k))) & mask  # noqa: E731
    for _ in range(n):
        out.append((rotl((s[1] * 5) & mask, 7) * 9) & mask)
        t = (s[1] << 17) & mask
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
    return out


def test_xoshiro_matches_reference():
    st = np.array([1, 2, 3, 4], dtype=np.uint64)
    ref = _xoshiro_reference(st, 50)
    assert ref[0] == 11520
    jit = [int(K.next_u64(st)) for _ in range(50)]
    assert jit == ref


@pytest.mark.parametrize("name", ["metropolis_sweep", "metropolis_sweep_q2", "lr_metropolis_sweep_q2",
                                  "heat_bath_sweep", "swendsen_wang_sweep", "wolff_sweep",
                                  "lr_metropolis_sweep", "lr_heat_bath_sweep", "lr_wolff_sweep"])
def test_kernel_matches_py_func(name):
    rng = np.random.default_rng(0)
    n, q = 12, 3
    spins = rng.integers(0, q, size=n).astype(np.int32)
    st = rng.integers(1, 2**63, size=4, dtype=np.uint64)
    lf = 0.3 * rng.normal(size=(n, q))
    lj = 0.8 * rng.normal(size=(1, q, q))
    wf = np.exp(lf)
    wj = np.exp(lj)
    bond_p = np.array([0.6])
    lr_j = np.abs(rng.normal(size=(3, q, q)))
    lr_p = np.array([0.5, 0.3, 0.2])
    args = {
        "metropolis_sweep": lambda s, t: (s, t, wf, wj, True, False),
        "heat_bath_sweep": lambda s, t: (s, t, wf, wj, False, np.empty(q)),
        "swendsen_wang_sweep": lambda s, t: (s, t, lf, bond_p, True, np.empty(n, np.int64), np.empty((n, q)),
                                             np.empty(n, np.int64)),
        "wolff_sweep": lambda s, t: (s, t, lf, bond_p, True, 3, np.zeros(2, np.int64)),
        "lr_metropolis_sweep": lambda s, t: (s, t, lf, lr_j, False, True),
        "metropolis_sweep_q2": lambda s, t: (s % 2, t, wf[:, :2], wj[:, :2, :2], True, False),
        "lr_metropolis_sweep_q2": lambda s, t: (s % 2, t, lf[:, :2], lr_j[:, :2, :2], True, False),
        "lr_heat_bath_sweep": lambda s, t: (s, t, lf, lr_j, True, np.empty(q)),
        "lr_wolff_sweep": lambda s, t: (s, t, lf, lr_p, False, np.zeros(n, np.bool_), np.empty(n, np.int64), 4,
                                        np.zeros(2, np.int64)),
    }[name]
    kernel = getattr(LRK if name.startswith("lr_") else K, name.removesuffix("_q2"))
    s1, t1 = spins.copy(), st.copy()
    s2, t2 = spins.copy(), st.copy()
    a1, a2 = args(s1, t1), args(s2, t2)  # the q2 cases take a fresh copy of the spins
    r1 = kernel(*a1)
    with np.errstate(over="ignore"):
        r2 = kernel.py_func(*a2)
    s1, s2 = a1[0], a2[0]
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(t1, t2)
    assert r1 == r2


def test_reproducible_thread_independent_and_continuable():
    model = PottsChain.potts(30, 3, coupling=0.7, periodic=True)
    a = simulate(model, "heat-bath", 300, n_chains=3, n_burnin=20, rng=9, max_distance=2)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        b = simulate(model, "heat-bath", 300, n_chains=3, n_burnin=20, rng=9, max_distance=2)
    finally:
        numba.set_num_threads(old)
    np.testing.assert_array_equal(a.energy, b.energy)
    np.testing.assert_array_equal(a.overlap, b.overlap)
    first = simulate(model, "heat-bath", 100, n_chains=3, n_burnin=20, rng=9)
    rest = simulate(model, "heat-bath", 200, n_burnin=0, state=first.state)
    np.testing.assert_array_equal(np.concatenate([first.energy, rest.energy], axis=1), a.energy)
    assert rest.state.n_sweeps == 320
    c = simulate(model, "heat-bath", 300, n_chains=3, n_burnin=20, rng=10)
    assert not np.array_equal(a.energy, c.energy)


def test_connected_correlation_and_marginals():
    model = PottsChain.potts(40, 3, coupling=1.2, field=[0.3, 0.0, -0.2])
    run = simulate(model, "swendsen-wang", 4000, n_chains=4, rng=2, max_distance=4)
    sol = exact.solve(model)
    np.testing.assert_allclose(run.marginals(), sol.marginals, atol=0.03)
    np.testing.assert_allclose(run.correlation_function(), sol.correlation_function(4), atol=0.01)
    assert run.samples.shape == (4, 0, 40)


def test_bad_arguments():
    model = PottsChain.potts(10, 3)
    with pytest.raises(InvalidParameterError, match="unknown update"):
        simulate(model, "gibbs", 10)
    with pytest.raises(InvalidParameterError, match="n_burnin >= 1"):
        simulate(model, "wolff", 10, n_burnin=0)
    with pytest.raises(InvalidParameterError, match="nearest-neighbour"):
        simulate(LongRangeChain.power_law(10, 2), "swendsen-wang", 10)
    with pytest.raises(InvalidParameterError, match="Potts-form"):
        simulate(PottsChain.potts(10, 3, coupling=-1.0), "wolff", 10)
    run = simulate(model, "metropolis", 20, rng=0)
    with pytest.raises(InvalidParameterError, match="q = 2"):
        run.series("magnetisation")
    with pytest.raises(InvalidParameterError, match="max_distance > 0"):
        run.correlation_function()
