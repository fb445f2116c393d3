"""The power-law chain and its O(N) cluster sampler (Fukui-Todo Swendsen-Wang).

Oracles: the image sums against direct sums; the energy against a brute pair sum and against the
equivalent :class:`LongRangeChain`; the samplers against exact enumeration (all distances, no
cutoff) with |z| <= 5 over seeds and a negative control; a fixed-start chi-square (ergodicity);
the O(N) sampler against the O(N R) heat-bath at R = N - 1 on a chain too long to enumerate.
"""

import numpy as np
import pytest
from oracles import chi_square_pvalue, enumerate_chain

from ising_moe import LongRangeChain, PowerLawChain
from ising_moe.errors import InvalidParameterError
from ising_moe.mc import ChainState, simulate
from ising_moe.mc import _power_law_kernels as PLK
from ising_moe.mc.observables import exact_observables
from ising_moe.power_law import power_law_weights


# ----------------------------------------------------------------------------- the model
@pytest.mark.parametrize("n,sigma", [(7, 0.5), (10, 1.0), (64, 0.25)])
def test_periodic_weights_are_image_sums(n, sigma):
    w = power_law_weights(n, sigma, periodic=True)
    m = np.arange(-20000, 20001)
    d = np.arange(1, n)[:, None]
    direct = (np.abs(d + m * n) ** -(1.0 + sigma)).sum(axis=1)
    # tail of the direct sum beyond |m| = M: about 2 (M N)^-sigma / (sigma N)
    tail = 2 * (20000.0 * n) ** -sigma / (sigma * n)
    assert np.all(np.abs(w - direct) <= 1.5 * tail)
    assert np.all(w - direct >= 0)
    np.testing.assert_allclose(w, w[::-1], rtol=1e-12)  # w_P(d) = w_P(N - d)


def _brute_energy(model, s):
    n = model.n_sites
    s = np.asarray(s)
    e = -model.site_fields()[np.arange(n), s].sum()
    for i in range(n):
        for j in range(i + 1, n):
            if model.periodic:  # images |m| <= M, and the rest by its integral (midpoint rule)
                d, big, sg = j - i, 3000, model.sigma
                w = sum(abs(d + m * n) ** -(1 + sg) for m in range(-big, big + 1))
                w += (((big + 0.5) * n + d) ** -sg + ((big + 0.5) * n - d) ** -sg) / (sg * n)
            else:
                w = (j - i) ** -(1 + model.sigma)
            e -= w * model.pair_couplings[s[i], s[j]]
    return e


@pytest.mark.parametrize("periodic", [False, True])
def test_energy_against_brute_pair_sum_and_long_range_chain(periodic):
    rng = np.random.default_rng(0)
    model = PowerLawChain.potts(7, 3, coupling=0.7, sigma=0.8, field=rng.normal(size=(7, 3)), periodic=periodic)
    s = rng.integers(0, 3, size=(5, 7))
    brute = np.array([_brute_energy(model, row) for row in s])
    np.testing.assert_allclose(model.energy(s), brute, rtol=1e-8)
    np.testing.assert_allclose(model.energy(s), model.to_long_range().energy(s), rtol=1e-12)


def test_ising_form():
    rng = np.random.default_rng(1)
    h = rng.normal(size=9)
    model = PowerLawChain.ising(9, coupling=0.6, sigma=0.5, field=h)
    s = rng.integers(0, 2, size=(4, 9))
    spin = 2 * s - 1
    d = np.abs(np.subtract.outer(np.arange(9), np.arange(9)))
    w = np.triu(np.where(d > 0, d, 1) ** -1.5, 1)
    expect = -0.6 * np.einsum("ni,ij,nj->n", spin, w, spin) - spin @ h
    np.testing.assert_allclose(model.energy(s), expect, rtol=1e-12)


@pytest.mark.parametrize("kwargs,match", [
    (dict(sigma=0.0, periodic=True), "sigma must be > 0"),
    (dict(sigma=-1.0), "sigma must be > -1"),
])
def test_invalid_sigma(kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        PowerLawChain.potts(8, 2, **kwargs)


def test_even_ring_has_no_long_range_twin():
    with pytest.raises(InvalidParameterError, match="odd n_sites"):
        PowerLawChain.potts(8, 2, periodic=True).to_long_range()


def test_antiferromagnet_refused_by_swendsen_wang():
    with pytest.raises(InvalidParameterError, match="J >= 0"):
        simulate(PowerLawChain.potts(8, 2, coupling=-1.0), "swendsen-wang", 10)


# ----------------------------------------------------------------------------- kernels
def test_alias_table_is_exact_and_kernel_matches_py_func():
    w = np.random.default_rng(2).random(37) ** 3
    prob, alias = np.empty(37), np.empty(37, dtype=np.int64)
    PLK.build_alias(w, prob, alias)
    implied = prob.copy()
    np.add.at(implied, alias, 1.0 - prob)
    np.testing.assert_allclose(implied / 37, w / w.sum(), rtol=1e-12, atol=1e-15)
    prob2, alias2 = np.empty(37), np.empty(37, dtype=np.int64)
    PLK.build_alias.py_func(w, prob2, alias2)
    # numba's sum may round differently from Python's: equal to rounding, same aliases
    np.testing.assert_allclose(prob, prob2, rtol=1e-12)
    assert np.array_equal(alias, alias2)


def test_sweep_kernel_matches_py_func():
    model = PowerLawChain.potts(30, 3, coupling=0.9, sigma=0.5, field=np.random.default_rng(3).normal(size=(30, 3)),
                                periodic=True)
    from ising_moe.mc.samplers import _power_law_events

    prob, alias, lam = _power_law_events(model)
    lf = model.beta * np.ascontiguousarray(model.site_fields())
    out = []
    for f in (PLK.pl_swendsen_wang_sweep, PLK.pl_swendsen_wang_sweep.py_func):
        spins = np.zeros(30, dtype=np.int32)
        st = np.array([1, 2, 3, 4], dtype=np.uint64)
        work = [np.empty(30, dtype=np.int64) for _ in range(3)]
        counts = np.zeros(2, dtype=np.int64)
        for _ in range(5):
            f(spins, st, lf, prob, alias, lam, True, *work, np.empty(31, dtype=np.int64), np.empty(3), counts)
        out.append((spins.copy(), st.copy(), counts.copy()))
    assert all(np.array_equal(a, b) for a, b in zip(*out))


def test_event_rate_matches_sum_over_pairs():
    for periodic, n in ((False, 9), (True, 9), (True, 10)):
        model = PowerLawChain.potts(n, 2, coupling=0.7, sigma=0.6, beta=1.3, periodic=periodic)
        from ising_moe.mc.samplers import _power_law_events

        _, _, lam = _power_law_events(model)
        assert lam == pytest.approx(1.3 * 0.7 * model.n_pairs() @ model.distance_weights(), rel=1e-12)


# ----------------------------------------------------------------------------- against exact values
SEEDS = range(6)
NAMES = ("energy_per_site", "occupation:0", "overlap:1", "overlap:3")


def _model(q, periodic, with_field, beta):
    n = 10 if q == 2 else 7
    field = 0.3 * np.cos(np.arange(n)[:, None] + np.arange(q)) if with_field else None
    return PowerLawChain.potts(n, q, coupling=0.8, sigma=0.5, field=field, beta=beta, periodic=periodic)


def _z(runs, model):
    ref = exact_observables(model, 3)
    return np.array([[run.stats(name).z_score(ref[name]) for name in NAMES] for run in runs])


def _passes(z):
    return np.abs(z).max() <= 5 and 0.5 <= z.std() <= 1.6


@pytest.mark.parametrize("update", ["swendsen-wang", "heat-bath"])
@pytest.mark.parametrize("q", [2, 3])
def test_z_over_seeds_against_enumeration(update, q):
    """All distances, no cutoff: |z| <= 5 over seeds; the same runs fail against another beta."""
    beta = 0.9
    z_all, z_wrong = [], []
    for periodic in (False, True):
        for with_field in (False, True):
            model = _model(q, periodic, with_field, beta)
            runs = [simulate(model, update, 1500, n_chains=4, n_burnin=100, rng=seed, max_distance=3)
                    for seed in SEEDS]
            z = _z(runs, model)
            assert _passes(z), (periodic, with_field, z)
            z_all.append(z)
            z_wrong.append(_z(runs, _model(q, periodic, with_field, 1.25 * beta)))
    pooled = np.concatenate(z_all)
    assert 0.7 <= pooled.std() <= 1.3 and abs(pooled.mean()) < 0.5, pooled
    assert not any(_passes(z) for z in z_wrong)


CASES = [(u, q, p, f) for u in ("swendsen-wang", "heat-bath", "wolff") for q in (2, 3) for p in (False, True)
         for f in (False, True)]


@pytest.mark.parametrize("update,q,periodic,field", CASES,
                         ids=[f"{u}-q{q}-{'pbc' if p else 'obc'}-{'h' if f else 'h0'}" for u, q, p, f in CASES])
def test_fixed_start_reaches_exact_distribution(update, q, periodic, field):
    """Ergodicity from the all-zero start; even rings exercise the pairs at distance N / 2."""
    n = 6 if q == 2 else 4
    h = np.linspace(-0.3, 0.3, q) if field else None
    model = PowerLawChain.potts(n, q, coupling=1.0, sigma=0.5, field=h, beta=0.8, periodic=periodic)
    rng_state = np.random.default_rng(3).integers(1, 2**63, size=(1, 4), dtype=np.uint64)
    state = ChainState(np.zeros((1, n), dtype=np.int32), rng_state)
    if update == "wolff":
        state = simulate(model, update, 1, n_burnin=20, state=state).state
    run = simulate(model, update, 6000 * 8, n_burnin=0, state=state, save_every=8)
    _, p, _ = enumerate_chain(model)
    assert chi_square_pvalue(run.samples[0], p, q) > 1e-6
    _, p_wrong, _ = enumerate_chain(model.replace(beta=0.5 * model.beta))
    assert chi_square_pvalue(run.samples[0], p_wrong, q) < 1e-6


@pytest.mark.parametrize("periodic", [False, True])
def test_agrees_with_order_n_r_sampler_at_full_range(periodic):
    """N = 41 (too many states to enumerate): O(N) Swendsen-Wang vs O(N R) heat-bath at R = N - 1."""
    model = PowerLawChain.ising(41, coupling=0.3, sigma=0.5, field=0.05, beta=1.0, periodic=periodic)
    fast = simulate(model, "swendsen-wang", 3000, n_chains=4, rng=1, max_distance=4)
    # heat-bath tunnels slowly between the magnetised states (tau of m ~ 170 sweeps on the ring): with
    # 3000 sweeps its tau was underestimated (34) and m off by 5 errors, unflagged
    slow = simulate(model.to_long_range(), "heat-bath", 20000, n_chains=4, rng=2, max_distance=4)
    z = []
    for name in ("energy_per_site", "magnetisation", "overlap:1", "overlap:4"):
        a, b = fast.stats(name), slow.stats(name)
        z.append((a.mean - b.mean) / np.hypot(a.error, b.error))
    assert np.abs(z).max() <= 5, z
    # negative control: a chain with a cutoff at R = 2 is another model, and the test sees it
    cut = LongRangeChain(41, model.to_long_range().couplings[:2], model.fields, beta=1.0, periodic=periodic)
    other = simulate(cut, "heat-bath", 3000, n_chains=4, rng=3, max_distance=4)
    a, b = fast.stats("energy_per_site"), other.stats("energy_per_site")
    assert abs(a.mean - b.mean) / np.hypot(a.error, b.error) > 5


# ----------------------------------------------------------------------------- the command line
def test_cli_simulate_and_sweep_power_law(tmp_path):
    import json

    from click.testing import CliRunner

    from ising_moe.cli import main

    r = CliRunner().invoke(main, ["simulate", "--model-kind", "power-law", "--sigma", "0.5", "-n", "10", "--beta",
                                  "0.7", "--update", "swendsen-wang", "--n-sweeps", "3000", "--max-distance", "2",
                                  "--seed", "3", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)["observables"]
    assert all(row["exact"] is not None and abs(row["z"]) <= 5 for row in rows)
    assert json.loads(r.output)["params"]["sigma"] == 0.5
    r = CliRunner().invoke(main, ["sweep", "--model-kind", "power-law", "--sigma", "0.5,1.5", "-n", "8", "--update",
                                  "swendsen-wang,heat-bath", "--n-sweeps", "500", "--max-distance", "3", "-o", str(tmp_path / "s.h5"),
                                  "--x", "sigma", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["n_points"] == 4 and doc["max_abs_z_vs_exact"] <= 5
    r = CliRunner().invoke(main, ["simulate", "--model-kind", "power-law", "--sigma", "0", "--periodic"])
    assert r.exit_code == 2 and "sigma must be > 0" in r.output and "Traceback" not in r.output
