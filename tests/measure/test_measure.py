"""Empirical statistics on exact samples of known chains, where every statistic has an exact value."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from ising_moe import InvalidParameterError, PottsChain, exact
from ising_moe import measure as M
from ising_moe.cli import main
from ising_moe.data import ExpertSequences, load_experts, save_experts


@pytest.fixture(scope="module")
def potts_samples():
    model = PottsChain.potts(96, 3, coupling=1.6)
    return model, exact.sample(model, 3000, rng=1)


@pytest.fixture(scope="module")
def field_chain():
    rng = np.random.default_rng(4)
    n = 64
    fields = np.c_[0.6 * np.sin(np.arange(n) / 6), 0.3 * rng.normal(size=n), np.zeros(n)]
    model = PottsChain(n, np.array([[1.2, 0.0, 0.3], [0.0, 0.8, 0.0], [0.3, 0.0, 1.0]]), fields)
    return model, exact.sample(model, 4000, rng=2)


def test_correlation_function_matches_exact(potts_samples):
    model, x = potts_samples
    c = M.correlation_function(x, None, 3, max_distance=12, rng=0)
    ref = exact.correlation_function(model, 12, per_state=True)
    z = (c.values - ref.sum(axis=1)) / c.errors
    assert np.max(np.abs(z)) <= 5, z
    zs = (c.per_state - ref) / c.per_state_errors
    assert np.max(np.abs(zs)) <= 5
    # the shuffle null is consistent with zero at r >= 1
    assert np.all(np.abs(c.null[:, 1:]) < 5 * c.errors[None, 1:])
    # negative control: the exact C(r) of another coupling is rejected
    wrong = exact.correlation_function(model.replace(beta=1.1), 12)
    assert np.max(np.abs((c.values - wrong) / c.errors)) > 5


def test_inhomogeneous_chain_rates_and_correlations(field_chain):
    model, x = field_chain
    sol = exact.solve(model)
    rates = M.position_rates(x, None, 3)
    se = np.sqrt(sol.marginals * (1 - sol.marginals) / x.shape[0])
    assert np.max(np.abs(rates.rates - sol.marginals) / se) <= 5
    assert np.mean((rates.lower <= sol.marginals) & (sol.marginals <= rates.upper)) > 0.9
    c = M.correlation_function(x, None, 3, max_distance=8, rng=0)
    z = (c.values - sol.correlation_function(8)) / c.errors
    assert np.max(np.abs(z)) <= 5, z


def test_errors_are_calibrated_across_independent_datasets():
    model = PottsChain.potts(40, 3, coupling=1.2, field=[0.3, 0.0, -0.2])
    estimates, errors = [], []
    for seed in range(24):
        c = M.correlation_function(exact.sample(model, 400, rng=100 + seed), None, 3, max_distance=4, n_null=0)
        estimates.append(c.values)
        errors.append(c.errors)
    spread = np.std(estimates, axis=0, ddof=1)[1:]
    mean_error = np.mean(errors, axis=0)[1:]
    assert np.all((spread / mean_error > 0.6) & (spread / mean_error < 1.6)), spread / mean_error
    # unbiased: the mean over datasets agrees with the exact value within its own error
    ref = exact.correlation_function(model, 4)
    assert np.all(np.abs(np.mean(estimates, axis=0) - ref)[1:] < 5 * spread / np.sqrt(24))


def test_masked_sequences_stay_unbiased(potts_samples):
    model, x = potts_samples
    rng = np.random.default_rng(3)
    mask = rng.random(x.shape) > 0.2
    c = M.correlation_function(x, mask, 3, max_distance=6, rng=0)
    z = (c.values - exact.correlation_function(model, 6)) / c.errors
    assert np.max(np.abs(z)) <= 5


def test_correlation_length_and_blocks(potts_samples):
    model, x = potts_samples
    c = M.correlation_function(x, None, 3, max_distance=20, block_sizes=(8, 32), rng=0)
    xi = M.fit_correlation_length(c.distances, c.values, c.errors, influence=c.influence, rng=0)
    xi_exact = exact.correlation_length(model)
    assert xi.success and abs(xi.xi - xi_exact) <= 5 * xi.error
    assert abs(xi.xi_sum - xi_exact) <= 5 * xi.xi_sum_error
    assert xi.window[0] == 1 and 3 <= xi.window[1] <= 20
    for b in (8, 32):
        xb = M.fit_correlation_length(c.distances, c.block_values[b], c.block_errors[b],
                                      influence=c.block_influence[b], r_max=b - 1, rng=0)
        assert abs(xb.xi - xi_exact) <= 5 * xb.error
    # no correlation: the fit says so instead of returning garbage
    noise = np.random.default_rng(0).integers(0, 3, size=(500, 40))
    cn = M.correlation_function(noise, None, 3, max_distance=10, rng=0)
    xn = M.fit_correlation_length(cn.distances, cn.values, cn.errors, influence=cn.influence, rng=0)
    assert not xn.success and np.isnan(xn.xi) and "no correlation" in xn.message


def test_position_dependence_controls(potts_samples, field_chain):
    _, x = potts_samples
    null = M.position_dependence(x, None, 3, n_blocks=8, rng=0)
    assert null.p_value_shuffle > 1e-3
    assert abs(null.mi_excess) < 5 * null.mi_null_sd
    _, y = field_chain
    alt = M.position_dependence(y, None, 3, n_blocks=8, rng=0)
    assert alt.p_value_shuffle < 0.02 and alt.mi_excess > 5 * alt.mi_null_sd
    assert alt.mi_miller_madow < alt.mutual_information


def test_probe_at_chance_without_position_signal(potts_samples, field_chain):
    pytest.importorskip("sklearn")
    _, x = potts_samples
    experts = x[:, None, :, None]
    feats, pos, _ = M.expert_features(experts, np.ones(x.shape, bool), 3, max_tokens=6000, rng=0)
    res = {r.target: r for r in M.positional_probe(feats, pos, x.shape[1], (2, 8), rng=0)}
    for r in res.values():
        assert abs(r.accuracy - r.chance) < max(5 * r.accuracy_sd, 0.03), r
    _, y = field_chain
    feats, pos, _ = M.expert_features(y[:, None, :, None], np.ones(y.shape, bool), 3, max_tokens=6000, rng=0)
    res = {r.target: r for r in M.positional_probe(feats, pos, y.shape[1], (2, 8), rng=0)}
    assert res["block:8"].accuracy > res["block:8"].chance + 0.05


def _brute_lrc(ids, k, n_experts, m):
    windows = [ids[s, t:t + m] for s in range(ids.shape[0]) for t in range(ids.shape[1] - m + 1)]
    counts = np.array([[(w == e).any(axis=1).sum() for e in range(n_experts)] for w in windows])
    actual = k * m * len(windows)
    f1 = [2 * counts[counts >= j].sum() / (m * (counts >= j).sum() + actual) for j in range(1, m + 1)]
    sch = [np.sort(counts, axis=1)[:, ::-1][:, :c].sum() / actual for c in range(1, n_experts + 1)]
    return max(f1), np.array(sch)


def test_local_routing_consistency_by_brute_force():
    rng = np.random.default_rng(5)
    ids = np.array([[rng.choice(6, size=2, replace=False) for _ in range(12)] for _ in range(5)])
    res = M.local_routing_consistency(ids, None, 6, segment_lengths=(1, 3, 4), rng=0)
    for i, m in enumerate((1, 3, 4)):
        srp, sch = _brute_lrc(ids, 2, 6, m)
        assert res.srp[i] == pytest.approx(srp, rel=1e-12)
        np.testing.assert_allclose(res.sch[i], sch, rtol=1e-12)
    assert res.srp[0] == 1.0 and np.all(res.srp_error[1:] > 0)  # one-token windows are trivially covered


def test_load_balance_and_static_routing(potts_samples, field_chain):
    _, x = potts_samples
    lb = M.load_balance(x, None, 3, rng=0)
    assert abs(lb.kl_uniform) < 5 * lb.kl_uniform_error + 1e-3
    st = M.static_routing(x, None, 3, rng=0)
    assert abs(st.accuracy - st.chance) < 0.02
    _, y = field_chain
    st = M.static_routing(y, None, 3, rng=0)
    assert st.accuracy > st.chance + 0.02 and st.entropy_explained > 0


def test_bad_input():
    x = np.zeros((4, 10), dtype=int)
    with pytest.raises(InvalidParameterError, match="shape"):
        M.correlation_function(np.zeros((4, 10, 2, 1), dtype=int))
    mask = np.ones((4, 10), bool)
    mask[2] = False
    with pytest.raises(InvalidParameterError, match="no valid position"):
        M.correlation_function(x, mask, 3)
    with pytest.raises(InvalidParameterError, match="< n_experts"):
        M.correlation_function(x + 5, None, 3)
    with pytest.raises(InvalidParameterError, match="distinct"):
        M.position_rates(np.zeros((3, 5, 2), dtype=int), None, 3)


def _dataset(tmp_path, finished=True):
    rng = np.random.default_rng(0)
    model = PottsChain.potts(48, 4, coupling=1.0, field=0.3 * rng.normal(size=(48, 4)))
    layers = np.stack([exact.sample(model, 300, rng=s) for s in (1, 2)], axis=1)[..., None]
    dropped = rng.random((300, 2, 48)) < 0.05
    data = ExpertSequences(layers, np.ones((300, 48), bool), 4, layers=[1, 3], dropped=dropped,
                           attrs={"model_id": "test/chain", "weights": "random-init"})
    path = tmp_path / "chain.h5"
    save_experts(data, path)
    if not finished:
        import h5py

        with h5py.File(path, "a") as f:
            f.attrs["finished"] = False
    return path


def test_measure_write_load_and_cli(tmp_path):
    pytest.importorskip("sklearn")
    path = _dataset(tmp_path)
    data = load_experts(path)
    res = M.measure(data, max_distance=10, block_sizes=(8, 16), n_bootstrap=50, seed=1)
    again = M.measure(data, max_distance=10, block_sizes=(8, 16), n_bootstrap=50, seed=1)
    assert res.layers[0].xi.xi == again.layers[0].xi.xi  # reproducible
    assert res.layers[0].dropped_by_position is not None
    M.write_measurements(res, tmp_path / "s.h5")
    back = M.load_measurements(tmp_path / "s.h5")
    np.testing.assert_allclose(back["layers"][3]["correlation"], res.layer(3).correlation.values)
    assert back["layers"][1]["xi"] == pytest.approx(res.layer(1).xi.xi)
    assert back["probes"] and back["attrs"]["weights"] == "random-init"
    r = CliRunner().invoke(main, ["measure", str(path), "--max-distance", "8", "--block-sizes", "8,16",
                                  "--bootstrap", "30", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output[r.output.index("{"):])
    assert "RANDOM-INIT" in doc["note"]
    for fig in doc["figures"]:
        assert (tmp_path / fig).exists() or __import__("pathlib").Path(fig).exists()
    assert len(doc["figures"]) == 10  # rates, C(r), xi(b), capacity drops, probe: PNG + PDF


def test_measure_cli_errors(tmp_path):
    path = _dataset(tmp_path, finished=False)
    r = CliRunner().invoke(main, ["measure", str(path)])
    assert r.exit_code == 2 and "unfinished" in r.output
    r = CliRunner().invoke(main, ["measure", str(tmp_path / "nope.h5")])
    assert r.exit_code == 2 and "no such file" in r.output
    good = _dataset(tmp_path / "g")
    r = CliRunner().invoke(main, ["measure", str(good), "--layers", "2"])
    assert r.exit_code == 2 and "layer 2" in r.output
    for args, msg in ((["--bootstrap", "-1"], "n_bootstrap"), (["--block-sizes", "1"], "block size")):
        r = CliRunner().invoke(main, ["measure", str(good), "-o", str(tmp_path / "b.h5"), *args])
        assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output
