"""Convergence diagnostics of Monte Carlo runs: dispersed starts, R-hat, n/tau flags."""

import numpy as np

from ising_moe import PottsChain
from ising_moe.mc import ChainState, simulate
from ising_moe.mc.observables import exact_observables
from ising_moe.mc.samplers import faster_update


def test_dispersed_start_covers_ordered_states_and_random_ones():
    model = PottsChain.potts(50, 3, coupling=1.0)
    spins = ChainState.initial(model, n_chains=5, rng=0).spins
    for c in (0, 1, 2):  # zero field: every ordered state, in index order
        assert np.all(spins[c] == c)
    for c in (3, 4):  # the chains beyond q: random
        assert len(np.unique(spins[c])) == 3


def test_dispersed_start_seeds_the_ordered_states_of_lowest_energy_first():
    """q = 8 with the field of issue 20 and 4 chains: the old rule seeded states 0 and 1 (and two
    random starts that fell into state 0), so no chain visited state 7, which carries as much
    weight as state 1, and nothing was flagged. The modes that matter are seeded first."""
    field = 0.3 * np.cos(2 * np.pi * np.arange(8) / 8)
    model = PottsChain.potts(32, 8, coupling=6.0, field=field, periodic=True)
    spins = ChainState.initial(model, n_chains=4, rng=0).spins
    assert [int(s[0]) for s in spins] == [0, 1, 7, 2]
    assert all(len(np.unique(s)) == 1 for s in spins)
    spins = ChainState.initial(model, n_chains=8, rng=0).spins
    assert sorted(int(s[0]) for s in spins) == list(range(8))


def test_rhat_sees_chains_stuck_in_different_modes():
    """A strongly ordered Ising chain: single-spin updates cannot flip the whole chain in the run.
    From one common ordered start every chain sits in the same mode: here no spin ever flips, and
    the old code reported error 0 with R-hat 1 against the exact 0 (now: "no variation", flagged).
    Dispersed starts make R-hat and the between-chain test (and the flags) report it."""
    model = PottsChain.ising(64, coupling=4.0, beta=1.0, periodic=True)
    exact = exact_observables(model)["magnetisation"]
    same = simulate(model, "heat-bath", 400, n_chains=4, n_burnin=50, rng=1, start="ordered").stats("magnetisation")
    assert not same.varied and abs(same.mean - exact) == 1  # the failure mode
    assert same.problems() == ["no variation: error not estimable (at its bound)"]
    run = simulate(model, "heat-bath", 400, n_chains=4, n_burnin=50, rng=1)
    st = run.stats("magnetisation")
    assert st.rhat > 1.5
    assert any("R-hat" in p for p in st.problems()) and any("chains disagree" in p for p in st.problems())
    assert faster_update(model, "heat-bath") == "swendsen-wang or wolff"


def test_short_run_flagged_by_n_over_tau():
    model = PottsChain.ising(64, coupling=1.5, beta=1.0, periodic=True)  # xi ~ 10: tau of m ~ 100 sweeps
    st = simulate(model, "metropolis", 500, n_chains=4, n_burnin=100, rng=2).stats("magnetisation")
    assert st.n_over_tau < 50 and any("n/tau" in p for p in st.problems())
    # negative control: a fast observable of a weakly coupled chain passes
    weak = simulate(model.replace(beta=0.2), "heat-bath", 2000, n_chains=4, n_burnin=100, rng=2)
    assert weak.stats("energy_per_site").problems() == []
    assert faster_update(PottsChain(8, np.random.default_rng(0).normal(size=(3, 3))), "heat-bath") is None
    assert faster_update(model, "wolff") is None


def test_measurements_equal_direct_computation_from_configurations():
    """The fused measurement kernels (energy from the equal-neighbour count, occupation, site
    counts, overlaps) against direct computation on every saved configuration."""
    rng = np.random.default_rng(5)
    from ising_moe import LongRangeChain

    models = [
        PottsChain.ising(37, coupling=0.7, field=0.3, periodic=True),  # Potts-form bonds, q = 2
        PottsChain.potts(23, 5, coupling=0.9, field=rng.normal(size=5)),  # Potts-form, q > 2
        PottsChain(29, rng.normal(size=(28, 3, 3)), rng.normal(size=(29, 3))),  # general, per bond
        PottsChain(30, rng.normal(size=(3, 3)), rng.normal(size=3), periodic=True),  # general homogeneous
        LongRangeChain.power_law(15, 3, coupling=0.8, max_distance=4, periodic=True),
    ]
    for model in models:
        run = simulate(model, "heat-bath", 60, n_chains=2, n_burnin=5, rng=3, max_distance=4, save_every=1)
        conf = run.samples  # (chains, sweeps, sites): every measured configuration
        np.testing.assert_allclose(run.energy, model.energy(conf.reshape(-1, model.n_sites)).reshape(2, 60),
                                   rtol=1e-12, atol=1e-12)
        for a in range(model.n_states):
            np.testing.assert_array_equal(run.occupation[..., a], (conf == a).sum(axis=2))
            np.testing.assert_array_equal(run.site_counts[..., a], (conf == a).sum(axis=1))
        n = model.n_sites
        for r in range(1, 5):
            same = (conf == np.roll(conf, -r, axis=2)).mean(axis=2) if model.periodic else \
                (conf[..., : n - r] == conf[..., r:]).mean(axis=2)
            np.testing.assert_allclose(run.overlap[..., r], same, rtol=1e-15)


def test_wolff_whole_chain_flips_keep_an_honest_error():
    """Strongly coupled ring with a weak field: Wolff flips the whole chain almost every sweep, so
    occupation:1 alternates between ~p and ~1-p (period-2 dynamics). The old windowed tau was
    negative, floored at 1e-12: error 5e-9 against a spread of 3e-3 over seeds (z sd ~6e5)."""
    model = PottsChain.ising(32, coupling=6.0, field=0.01, periodic=True)
    exact = exact_observables(model)["occupation:1"]
    runs = [simulate(model, "wolff", 2000, n_chains=4, n_burnin=100, rng=seed).stats("occupation:1")
            for seed in range(10)]
    spread = np.std([s.mean for s in runs], ddof=1)
    errors = np.array([s.error for s in runs])
    assert np.all(errors > spread / 3) and np.all(errors < 3 * spread)
    assert max(abs(s.z_score(exact)) for s in runs) <= 5


def test_runs_without_site_counts_measure_the_same():
    """``count_sites=False`` (what ``isingmoe simulate`` uses without -o: the per-site scatter
    cost as much as a Metropolis sweep at q = 64) changes no measurement, and marginals refuse."""
    import pytest

    from ising_moe import LongRangeChain
    from ising_moe.errors import InvalidParameterError

    for model in (PottsChain.potts(40, 2, coupling=1.0, periodic=True), PottsChain.potts(40, 5, coupling=1.0),
                  LongRangeChain.power_law(12, 3, coupling=0.8, max_distance=3)):
        for update in ("metropolis", "heat-bath", "wolff"):
            a = simulate(model, update, 100, n_burnin=10, rng=3, max_distance=3)
            b = simulate(model, update, 100, n_burnin=10, rng=3, max_distance=3, count_sites=False)
            for key in ("energy", "occupation", "overlap"):
                np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
            assert b.site_counts.shape[1] == 0
            with pytest.raises(InvalidParameterError, match="count_sites"):
                b.marginals()
