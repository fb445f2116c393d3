"""Empirical statistics on exact samples of known chains, where every statistic has an exact value."""

import json
from pathlib import Path

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
    assert xi.p_value > 0.01 and not xi.capped and abs(xi.agreement_z) < 4
    # no correlation: the fit says so instead of returning garbage
    noise = np.random.default_rng(0).integers(0, 3, size=(500, 40))
    cn = M.correlation_function(noise, None, 3, max_distance=10, rng=0)
    xn = M.fit_correlation_length(cn.distances, cn.values, cn.errors, influence=cn.influence, rng=0)
    assert not xn.success and np.isnan(xn.xi) and "no correlation" in xn.message


def test_xi_by_block_equals_xi_once_blocks_exceed_the_window(potts_samples):
    """xi(b) = xi of the chain for a homogeneous chain when the window ends inside the block."""
    model, x = potts_samples
    xi_exact = exact.correlation_length(model)
    c = M.correlation_function(x, None, 3, max_distance=40, block_sizes=(4, 16, 32), n_null=0, rng=0)
    for b in (16, 32):
        xb = M.fit_correlation_length(c.distances, c.block_values[b], c.block_errors[b],
                                      influence=c.block_influence[b], r_max=b - 1, rng=0, allow_capped=True)
        assert xb.success and not xb.capped and xb.window[1] < b - 1
        assert abs(xb.xi - xi_exact) <= 5 * xb.error
    # b = 4: the window reaches b - 1; kept (allow_capped) but flagged
    x4 = M.fit_correlation_length(c.distances, c.block_values[4], c.block_errors[4],
                                  influence=c.block_influence[4], r_max=3, rng=0, allow_capped=True)
    assert x4.capped


def test_failed_block_fits_are_nan_with_a_flag(tmp_path):
    """A failed fit is stored as NaN with success False (was 1e5 ± 0) and never drawn."""
    from ising_moe.plot import plot_xi_vs_block

    noise = np.random.default_rng(1).integers(0, 4, size=(300, 64))
    res = M.measure(ExpertSequences(noise, np.ones(noise.shape, bool), 4, attrs={"model_id": "noise"}),
                    max_distance=16, block_sizes=(8, 32), n_bootstrap=20, probe=False, seed=0)
    fits = res.layers[0].xi_by_block
    assert all(not f.success and np.isnan(f.xi) and np.isnan(f.error) for f in fits.values())
    M.write_measurements(res, tmp_path / "n.h5")
    back = M.load_measurements(tmp_path / "n.h5")["layers"][0]["xi_block"]
    assert all(np.isnan(v[0]) and v[2] is False for v in back.values())
    ax = plot_xi_vs_block(sorted(fits), [f.xi for f in fits.values()], [f.error for f in fits.values()],
                          success=[f.success for f in fits.values()])
    assert all(line.get_xydata().size == 0 for line in ax.get_lines())


def _exponential_curve(n_r=30, xi=4.0, amp=0.2, se=2e-3, start_noise=False):
    r = np.arange(n_r + 1)
    values = amp * np.exp(-r / xi)
    errors = np.full(n_r + 1, se)
    if start_noise:
        values[1] = 0.5 * se  # C(1) in the noise, C(r >= 2) far above it
    return r, values, errors


def test_window_rule_and_verdicts():
    r, v, e = _exponential_curve()
    res = M.fit_correlation_length(r, v, e)
    assert res.window[0] == 1 and res.success and abs(res.xi - 4.0) < 1e-3
    # C(1) in the noise: the fixed-sequence window test stops there, whatever lies beyond (a window
    # anywhere in 1..R would be found by chance in most noise-only data sets)
    r, v, e = _exponential_curve(start_noise=True)
    res = M.fit_correlation_length(r, v, e)
    assert res.window == (1, 0) and not res.success and "no correlation above noise" in res.message
    # the window reaches the cap: no xi, with the reason
    r, v, e = _exponential_curve(xi=200.0)
    res = M.fit_correlation_length(r, v, e, r_max=20)
    assert res.capped and not res.success and np.isnan(res.xi) and "window reaches the cap" in res.message
    # a plateau plus an exponential is not exponential: chi2 says so
    r, v, e = _exponential_curve(xi=2.0)
    v = v + 0.05 * (r < 12)
    res = M.fit_correlation_length(r, v, e)
    assert not res.success and np.isnan(res.xi) and "not exponential" in res.message and res.p_value < 1e-6
    # summed estimator on a truncated pure exponential is exact (the old one was biased low)
    c = 0.3 * np.exp(-np.arange(1, 9) / 5.0)
    assert M.correlation_length.summed_xi(c) == pytest.approx(5.0, rel=1e-9)


def test_both_xi_estimators_are_calibrated_over_seeds():
    """z of the fitted and summed xi over 20 data sets of exact samples: mean ~ 0, sd ~ 1."""
    model = PottsChain.potts(64, 3, coupling=1.6)
    xi_exact = exact.correlation_length(model)
    zf, zs = [], []
    for seed in range(20):
        x = exact.sample(model, 500, rng=1000 + seed)
        c = M.correlation_function(x, None, 3, max_distance=40, n_null=0)
        res = M.fit_correlation_length(c.distances, c.values, c.errors, influence=c.influence, rng=seed)
        if res.success:
            zf.append((res.xi - xi_exact) / res.error)
            zs.append((res.xi_sum - xi_exact) / res.xi_sum_error)
    assert len(zf) >= 18
    for z in (np.array(zf), np.array(zs)):
        assert abs(z.mean()) < 0.6 and 0.6 < z.std(ddof=1) < 1.4, (z.mean(), z.std(ddof=1))


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
        np.testing.assert_allclose(res.sch_static[i], sch, rtol=1e-12)
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
    assert doc["params"]["dropped"] == "router"  # the statistically valid default
    assert all("drops_position_effect_bits" in row for row in doc["layers"])


def _drawn_finite(fig):
    """Every drawn line and filled area has finite coordinates."""
    for ax in fig.axes:
        for line in ax.get_lines():
            assert np.all(np.isfinite(line.get_xydata())), ax.get_title()
        for coll in ax.collections:
            for path in coll.get_paths():
                assert np.all(np.isfinite(path.vertices)), ax.get_title()


def test_measure_figures_name_the_subject_and_draw_no_failed_value(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from ising_moe.report import measure as report

    chain = load_experts(_dataset(tmp_path))
    experts = chain.experts.copy()
    experts[:, 1] = np.random.default_rng(0).integers(0, 4, size=experts[:, 1].shape)  # layer 3: noise
    data = ExpertSequences(experts, chain.mask, 4, layers=[1, 3], dropped=chain.dropped, attrs=chain.attrs)
    res = M.measure(data, max_distance=10, block_sizes=(4, 8, 16), n_bootstrap=20, probe=False, seed=1)
    assert any(not f.success for st in res.layers for f in st.xi_by_block.values())  # noise blocks fail
    seen = []
    monkeypatch.setattr(report, "save_figure", lambda fig, stem: seen.append((fig, stem)) or [])
    report.measurement_figures(res, tmp_path / "s")
    assert {Path(stem).name.split(".")[-1] for _, stem in seen} >= {"rates", "correlation", "xi_block", "dropped"}
    for fig, stem in seen:
        title = fig.get_suptitle()
        assert "test/chain" in title and "random-init" in title, (stem, title)
        _drawn_finite(fig)
        for ax in fig.axes:
            if ax.get_label() != "<colorbar>" and ax.get_xlabel():
                assert "[" in ax.get_xlabel(), (stem, ax.get_xlabel())  # units
        if str(stem).endswith("correlation"):
            labels = fig.axes[0].get_legend_handles_labels()[1]
            assert {"null: within position", "null: within sequence"} <= set(labels)
        plt.close(fig)


def test_subject_label():
    from ising_moe.data import subject_label

    assert subject_label({"model_id": "google/switch-base-8", "model_alias": "switch-8", "weights": "random-init"}) \
        == "switch-8 (google/switch-base-8; random-init weights, not trained)"
    assert "imported routing trace" in subject_label({"model_id": "x", "weights": "imported-trace"})
    assert "trained here" in subject_label({"model_id": "m", "weights": "pretrained", "trained_here": True})


def test_measure_compare_two_files(tmp_path):
    a = _dataset(tmp_path / "a")
    rng = np.random.default_rng(5)
    x = rng.integers(0, 4, size=(300, 2, 48, 1))
    other = ExpertSequences(x, np.ones((300, 48), bool), 4, layers=[1, 3],
                            attrs={"model_id": "test/noise", "weights": "random-init"})
    b = tmp_path / "b.h5"
    save_experts(other, b)
    r = CliRunner().invoke(main, ["measure", str(a), "--compare", str(b), "--max-distance", "6", "--block-sizes", "8",
                                  "--bootstrap", "10", "--no-probe", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output[r.output.index("{"):])
    assert [row["layer"] for row in doc["compare"]["layers"]] == [1, 3]
    assert doc["compare"]["layers"][0]["max_abs_z_difference"] > 5  # correlated chain vs noise
    assert any(f.endswith(".compare.png") for f in doc["figures"])


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


def _composition_data(n_seq=400, n=48, seed=0):
    """Sequences of i.i.d. tokens, each sequence with its own preferred expert: C(r) is a flat plateau."""
    rng = np.random.default_rng(seed)
    favourite = rng.integers(0, 4, size=n_seq)
    x = np.where(rng.random((n_seq, n)) < 0.5, favourite[:, None], rng.integers(0, 4, size=(n_seq, n)))
    return x.astype(np.int32)


def test_within_sequence_null_explains_sequence_composition():
    x = _composition_data()
    c = M.correlation_function(x, None, 4, max_distance=10, n_null=4, rng=0)
    assert np.all(c.values[1:] > 5 * c.errors[1:])  # a plateau far above noise
    assert np.all(np.abs(c.null[:, 1:]) < 5 * c.errors[1:])  # the within-position null destroys it
    seq = c.null_sequence.mean(axis=0)[1:]
    assert np.all(np.abs(seq - c.values[1:]) < 5 * c.errors[1:])  # the within-sequence null keeps it
    # negative control: a Markov chain (order, no composition) is not reproduced by the within-sequence null
    y = exact.sample(PottsChain.potts(48, 4, coupling=2.0), 400, rng=3)
    cy = M.correlation_function(y, None, 4, max_distance=10, n_null=4, rng=0)
    assert cy.values[1] - cy.null_sequence.mean(axis=0)[1] > 10 * cy.errors[1]


def test_within_token_null_reproduces_token_statistics():
    rng = np.random.default_rng(2)
    n_seq, n = 300, 40
    tokens = rng.integers(0, 30, size=(n_seq, n))
    tokens[:, 1::2] = tokens[:, 0::2]  # repeated words: token t at i and i + 1
    route = rng.integers(0, 4, size=30)
    x = route[tokens].astype(np.int32)  # routing is a function of the token only
    c = M.correlation_function(x, None, 4, max_distance=6, n_null=3, rng=0, token_ids=tokens)
    tok = c.null_token.mean(axis=0)
    assert c.null_token.shape == (3, 7)
    assert np.all(np.abs(tok[1:] - c.values[1:]) < 5 * c.errors[1:])  # token statistics explain all of C(r)
    # the permutation keeps every token's routing: with deterministic routing it is the identity
    assert np.allclose(c.null_token, c.values[None, :], atol=1e-12)
    # negative control: routing with memory beyond the token is not reproduced
    y = exact.sample(PottsChain.potts(40, 4, coupling=2.0), 300, rng=3)
    cy = M.correlation_function(y, None, 4, max_distance=6, n_null=3, rng=0, token_ids=tokens)
    assert cy.values[1] - cy.null_token.mean(axis=0)[1] > 10 * cy.errors[1]
    with pytest.raises(InvalidParameterError, match="token_ids"):
        M.correlation_function(y, None, 4, max_distance=6, token_ids=tokens[:, :5])


def test_position_p_values_have_distinct_names(tmp_path):
    x = exact.sample(PottsChain.potts(48, 3, coupling=1.6), 600, rng=4)
    test = M.position_dependence(x, None, 3, n_blocks=8, rng=0)
    assert test.p_value == test.p_value_shuffle and test.chi2_p_value_iid < test.p_value
    data = ExpertSequences(x, np.ones(x.shape, bool), 3, attrs={"model_id": "chain"})
    res = M.measure(data, max_distance=6, block_sizes=(), n_bootstrap=10, probe=False, seed=0)
    M.write_measurements(res, tmp_path / "p.h5")
    attrs = M.load_measurements(tmp_path / "p.h5")["layers"][0]
    st = res.layers[0].position_test
    assert attrs["position_p_value"] == pytest.approx(st.p_value_shuffle)
    assert attrs["position_chi2_p_value_iid"] == pytest.approx(st.chi2_p_value_iid)


def _brute_online_cache(seq, n_experts, look_ahead):
    """moe-lrc's segment cache simulated separately for every cache size (top-k rows of one sequence)."""
    out = []
    for size in range(1, n_experts + 1):
        cache, last, clock, hits = [], {}, 0, 0
        for t, row in enumerate(seq):
            before = set(cache)
            n_new = 0
            for x in row:
                if x in before:
                    hits += 1
                elif x not in last and len(before) + n_new < size:  # first use fills a free slot
                    hits += 1
                    n_new += 1
            for j, x in enumerate(row):
                if x not in cache:
                    if len(cache) >= size:
                        future = [list(seq[t + 1: t + look_ahead].ravel()).count(y) + list(row[j:]).count(y)
                                  for y in cache]
                        victim = min(range(len(cache)), key=lambda m: (future[m], last[cache[m]]))
                        cache.pop(victim)
                    cache.append(x)
                clock += 1
                last[x] = clock
        out.append(hits / seq.size)
    return np.array(out)


def test_sch_is_moe_lrc_online_cache():
    ids = np.array([[0, 0, 1, 0, 2, 2, 1, 1]] * 2)
    res = M.local_routing_consistency(ids, None, 3, segment_lengths=(4,), n_bootstrap=10, rng=0)
    np.testing.assert_allclose(res.sch[0], [0.5, 0.875, 1.0])  # hand-computed, moe-lrc's definition
    np.testing.assert_allclose(res.sch_static[0], [0.55, 0.85, 1.0])  # best static cache per window
    rng = np.random.default_rng(7)
    for k in (1, 2):
        ids = np.array([[rng.choice(6, size=k, replace=False) for _ in range(30)] for _ in range(3)])
        res = M.local_routing_consistency(ids, None, 6, segment_lengths=(2, 5), n_bootstrap=10, rng=0)
        for i, m in enumerate((2, 5)):
            brute = np.mean([_brute_online_cache(s, 6, m) for s in ids], axis=0)
            np.testing.assert_allclose(res.sch[i], brute, rtol=1e-12)
