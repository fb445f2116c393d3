"""Fitters: gradients, exact likelihoods, parameter recovery, controls, and the fit pipeline."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from oracles import enumerate_chain

from ising_moe import (
    InvalidParameterError,
    LongRangeChain,
    PottsChain,
    exact,
    states_to_spins,
)
from ising_moe.cli import main
from ising_moe.errors import ConvergenceWarning, SparseDataWarning
from ising_moe.fit import (
    ChainData,
    ChainMaxLikelihood,
    ChainMeanField,
    ChainParametrization,
    ChainPseudoLikelihood,
    IndependentSites,
    chain_log_likelihood,
    zero_sum_gauge,
)
from ising_moe.fit.likelihood import _MLObjective

J3 = np.array([[1.0, -0.3, 0.2], [-0.3, 0.6, 0.0], [0.2, 0.0, 0.8]])


def _holes(x, rng, frac=0.25):
    mask = rng.random(x.shape) > frac
    mask[:, 0] = True
    return mask


@pytest.mark.parametrize("fields,couplings,max_range", [
    ("position", "potts", 1), ("position", "full", 1), ("homogeneous", "full", 1), ("blocks:3", "potts-bond", 1),
    ("position", "full-bond", 1), ("position", "full", 2), ("homogeneous", "potts", 3), ("none", "full", 1),
])
def test_gradient_matches_finite_differences(fields, couplings, max_range):
    rng = np.random.default_rng(0)
    n, q = 9, 3
    x = rng.integers(0, q, size=(40, n))
    lengths = rng.integers(4, n + 1, size=40)
    data = ChainData.from_arrays(x, _holes(x, rng), lengths, q)
    par = ChainParametrization(n, q, fields, couplings, max_range)
    obj = _MLObjective(data, par, 0.3, 0.2)
    theta = 0.4 * rng.normal(size=par.n_params)
    _, grad = obj(theta)
    eps = 1e-6
    fd = np.array([(obj(theta + eps * e)[0] - obj(theta - eps * e)[0]) / (2 * eps) for e in np.eye(par.n_params)])
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("max_range", [1, 2])
def test_exact_likelihood_matches_enumeration_with_hidden_sites(max_range):
    rng = np.random.default_rng(1)
    n, q = 6, 3
    couplings = rng.normal(size=(max_range, 1, q, q))
    fields = rng.normal(size=(n, q))
    x = rng.integers(0, q, size=(12, n))
    mask = _holes(x, rng, 0.3)
    lengths = rng.integers(3, n + 1, size=12)
    data = ChainData.from_arrays(x, mask, lengths, q)
    ll = chain_log_likelihood(data, fields, couplings)
    for s in range(12):
        L = lengths[s]
        model = LongRangeChain(L, couplings[:, 0], fields[:L]) if max_range > 1 else \
            PottsChain(L, couplings[0, 0], fields[:L])
        conf, p, _ = enumerate_chain(model)
        keep = np.all((conf == x[s, :L]) | ~mask[s, :L], axis=1)
        assert ll[s] == pytest.approx(np.log(p[keep].sum()), rel=1e-11)


@pytest.fixture(scope="module")
def chain_and_samples():
    rng = np.random.default_rng(2)
    n = 24
    model = PottsChain(n, J3, 0.6 * rng.normal(size=(n, 3)))
    return model, {size: exact.sample(model, size, rng=10 + size) for size in (1000, 4000)}


def test_parameter_recovery_within_standard_errors(chain_and_samples):
    model, samples = chain_and_samples
    h0, j0 = zero_sum_gauge(model.fields, model.couplings[None, None])
    fits = {}
    for size, x in samples.items():
        fit = ChainMaxLikelihood(couplings="full", l2=1e-6).fit(x)
        assert fit is not None and fit.result_.success
        zj = (fit.couplings_ - j0) / fit.result_.couplings_stderr
        zh = (fit.fields_ - h0) / fit.result_.fields_stderr
        assert np.nanmax(np.abs(zj[0, 0])) <= 5 and np.max(np.abs(zh)) <= 5
        assert 0.5 < np.sqrt(np.mean(zh**2)) < 1.6  # the errors are calibrated, not just large
        fits[size] = fit
    # errors shrink like 1/sqrt(N)
    ratio = fits[1000].result_.fields_stderr.mean() / fits[4000].result_.fields_stderr.mean()
    assert ratio == pytest.approx(2.0, rel=0.15)
    err_small = np.sqrt(np.mean((fits[1000].fields_ - h0) ** 2))
    err_large = np.sqrt(np.mean((fits[4000].fields_ - h0) ** 2))
    assert err_small / err_large == pytest.approx(2.0, rel=0.4)


def test_recovery_with_hidden_sites_and_variable_lengths(chain_and_samples):
    model, samples = chain_and_samples
    x = samples[4000]
    rng = np.random.default_rng(3)
    mask = _holes(x, rng, 0.2)
    lengths = rng.integers(12, x.shape[1] + 1, size=len(x))
    fit = ChainMaxLikelihood(couplings="full", l2=1e-6).fit(x, mask, lengths)
    h0, j0 = zero_sum_gauge(model.fields, model.couplings[None, None])
    z = (fit.couplings_[0, 0] - j0[0, 0]) / fit.result_.couplings_stderr[0, 0]
    assert np.max(np.abs(z)) <= 5


def test_misspecified_potts_is_detected_by_heldout_likelihood(chain_and_samples):
    _, samples = chain_and_samples
    x = samples[4000]
    train, test = x[:3000], x[3000:]
    potts = ChainMaxLikelihood(couplings="potts", standard_errors=False).fit(train)
    full = ChainMaxLikelihood(couplings="full", standard_errors=False).fit(train)
    diff = full.log_likelihood(test) - potts.log_likelihood(test)
    assert diff.mean() > 5 * diff.std(ddof=1) / np.sqrt(len(diff))
    # control: on data that *is* Potts, the full model gains nothing significant
    model = PottsChain.potts(24, 3, coupling=1.1, field=0.5 * np.random.default_rng(4).normal(size=(24, 3)))
    y = exact.sample(model, 4000, rng=5)
    potts = ChainMaxLikelihood(couplings="potts", standard_errors=False).fit(y[:3000])
    full = ChainMaxLikelihood(couplings="full", standard_errors=False).fit(y[:3000])
    diff = full.log_likelihood(y[3000:]) - potts.log_likelihood(y[3000:])
    assert diff.mean() < 5 * diff.std(ddof=1) / np.sqrt(len(diff))


def test_pseudo_likelihood_agrees_with_ml_on_large_samples(chain_and_samples):
    _, samples = chain_and_samples
    x = samples[4000]
    ml = ChainMaxLikelihood(couplings="full", l2=1e-6).fit(x)
    pl = ChainPseudoLikelihood(couplings="full", l2=1e-6).fit(x)
    err = ml.result_.couplings_stderr[0, 0]
    assert np.max(np.abs(pl.couplings_[0, 0] - ml.couplings_[0, 0]) / err) < 3
    mf = ChainMeanField(couplings="full").fit(x)
    assert mf.result_.log_likelihood < ml.result_.log_likelihood
    assert np.all(np.isfinite(mf.couplings_))


def test_fitted_xi_matches_generating_chain():
    model = PottsChain.potts(64, 4, coupling=1.4, field=[0.2, 0.0, -0.1, 0.1])
    x = exact.sample(model, 2000, rng=6)
    fit = ChainMaxLikelihood(fields="homogeneous", couplings="potts", l2=1e-6).fit(x)
    j = fit.result_.theta[-1]
    j_err = fit.result_.theta_stderr[-1]
    xi = lambda coupling: exact.correlation_length(PottsChain.potts(8, 4, coupling))  # noqa: E731
    xi_fit = exact.correlation_length(PottsChain(8, fit.couplings_[0, 0], fit.fields_.mean(axis=0)))
    dxi = (xi(j + 1e-4) - xi(j - 1e-4)) / 2e-4 * j_err
    assert abs(xi_fit - exact.correlation_length(model)) <= 5 * dxi


def test_ising_spins_and_conversion():
    model = PottsChain.ising(20, coupling=0.7, field=0.2)
    x = exact.sample(model, 3000, rng=7)
    states_fit = ChainMaxLikelihood(fields="homogeneous", couplings="full", l2=1e-6).fit(x)
    spin_fit = ChainMaxLikelihood(fields="homogeneous", couplings="full", l2=1e-6).fit(states_to_spins(x), spins=True)
    np.testing.assert_allclose(states_fit.couplings_, spin_fit.couplings_, atol=1e-8)
    j, h, _ = spin_fit.result_.ising_parameters()
    assert abs(j.mean() - 0.7) < 5 * 0.03 and abs(h[5:-5].mean() - 0.2) < 0.1
    with pytest.raises(InvalidParameterError, match="spins=True"):
        ChainMaxLikelihood().fit(states_to_spins(x))


def test_range_two_couplings_recovered():
    rng = np.random.default_rng(8)
    model = LongRangeChain(8, np.array([[[0.8, -0.8], [-0.8, 0.8]], [[-0.5, 0.5], [0.5, -0.5]]]),
                           0.3 * rng.normal(size=(8, 2)))
    conf, p, _ = enumerate_chain(model)
    x = conf[rng.choice(len(p), size=6000, p=p)]
    fit = ChainMaxLikelihood(couplings="full", max_range=2, l2=1e-6).fit(x)
    _, j0 = zero_sum_gauge(model.fields, model.couplings[:, None])
    z = (fit.couplings_ - j0) / fit.result_.couplings_stderr
    assert np.nanmax(np.abs(z)) <= 5
    nn = ChainMaxLikelihood(couplings="full", standard_errors=False).fit(x[:4000])
    r2 = ChainMaxLikelihood(couplings="full", max_range=2, standard_errors=False).fit(x[:4000])
    assert r2.score(x[4000:]) > nn.score(x[4000:])


def test_sparse_cells_and_non_convergence():
    rng = np.random.default_rng(9)
    x = rng.integers(0, 3, size=(30, 10))
    x[:, 4] = 0  # states 1 and 2 never seen at position 4
    with pytest.warns(SparseDataWarning, match="never observed"):
        fit = ChainMaxLikelihood(couplings="potts").fit(x, n_states=3)
    assert np.all(np.isfinite(fit.fields_)) and fit.result_.sparse_cells == 2
    y = rng.integers(0, 3, size=(30, 10))
    with pytest.warns(ConvergenceWarning):
        bad = ChainMaxLikelihood(couplings="full", max_iter=1, standard_errors=False).fit(y, n_states=3)
    assert not bad.result_.success and "ITERATIONS" in bad.result_.message.upper()


def test_independent_sites_closed_form():
    rng = np.random.default_rng(10)
    x = rng.integers(0, 4, size=(500, 6))
    fit = IndependentSites(l2=0.0).fit(x)
    freq = np.array([[np.mean(x[:, i] == a) for a in range(4)] for i in range(6)])
    model = np.exp(fit.fields_) / np.exp(fit.fields_).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model, freq, atol=1e-9)


def test_api_conventions():
    fitter = ChainMaxLikelihood(couplings="potts", l2=0.5)
    assert fitter.get_params()["l2"] == 0.5 and not hasattr(fitter, "result_")
    with pytest.raises(InvalidParameterError, match="not fitted"):
        fitter.score(np.zeros((3, 4), dtype=int))
    x = np.random.default_rng(11).integers(0, 2, size=(50, 8))
    assert fitter.fit(x) is fitter
    res = fitter.result_
    with pytest.raises(AttributeError):
        res.success = False
    assert res.n_parameters == fitter.parametrization_.n_params and res.aic > 0
    import matplotlib

    matplotlib.use("Agg")
    assert res.plot() is not None
    with pytest.raises(InvalidParameterError, match="couplings must be one of"):
        ChainMaxLikelihood(couplings="ising").fit(x)
    with pytest.raises(InvalidParameterError, match="no valid position"):
        ChainMaxLikelihood().fit(x, np.zeros_like(x, dtype=bool))


def _expert_file(tmp_path):
    from ising_moe.data import ExpertSequences, save_experts

    rng = np.random.default_rng(12)
    model = PottsChain(32, J3, 0.4 * rng.normal(size=(32, 3)))
    experts = np.stack([exact.sample(model, 160, rng=s) for s in (1, 2)], axis=1)[..., None]
    dropped = rng.random((160, 2, 32)) < 0.05
    data = ExpertSequences(experts, np.ones((160, 32), bool), 3, layers=[0, 2], dropped=dropped,
                           attrs={"model_id": "test/chain", "weights": "random-init"})
    save_experts(data, tmp_path / "chain.h5")
    return tmp_path / "chain.h5"


def test_fit_cli_end_to_end(tmp_path):
    path = _expert_file(tmp_path)
    out = tmp_path / "fits"
    r = CliRunner().invoke(main, ["fit", "--model", str(path), "--output-dir", str(out), "--bootstrap", "2",
                                  "--max-distance", "6", "--variants", "potts,full,pseudo-likelihood", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output[r.output.index("{"):])
    assert "RANDOM-INIT" in doc["note"] and len(doc["layers"]) == 2
    layer = doc["layers"][0]
    assert layer["heldout_gain_bits_per_token"]["full"] > 0  # the chain couplings help on chain data
    if layer["xi_empirical"] is not None:
        assert abs(layer["xi_fitted"]["full"] - layer["xi_empirical"]) < 5 * max(layer["xi_empirical_error"], 0.05)
    else:  # xi ~ 0.8: too few distances above noise for a measured xi (n/a with its reason)
        assert "n/a" in layer["xi_empirical_message"] or "too few" in layer["xi_empirical_message"] \
            or "window" in layer["xi_empirical_message"], layer["xi_empirical_message"]
    assert layer["mc_max_abs_z"] < 5
    for name in ("fit.h5", "summary.json", "correlation.png", "xi.pdf", "fields.png", "couplings.png",
                 "heldout.png"):
        assert (out / name).exists()
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary)[-1] == "finished" and summary["weights" if "weights" in summary else "source"]
    r = CliRunner().invoke(main, ["fit", "--model", str(path), "--output-dir", str(out)])
    assert r.exit_code == 2 and "--overwrite" in r.output


def test_fit_cli_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("ISINGMOE_DATA", str(tmp_path / "empty"))
    r = CliRunner().invoke(main, ["fit", "--model", "switch-32"])
    assert r.exit_code == 2 and "isingmoe extract --model switch-32" in r.output
    r = CliRunner().invoke(main, ["fit", "--model", "nonsense"])
    assert r.exit_code == 2 and "alias" in r.output
    path = _expert_file(tmp_path)
    r = CliRunner().invoke(main, ["fit", "--model", str(path), "--variants", "potts,bogus",
                                  "--output-dir", str(tmp_path / "o")])
    assert r.exit_code == 2 and "unknown variant" in r.output
    for args, msg in ((["--bootstrap", "-2"], "n_bootstrap"), (["--processes", "0"], "processes")):
        r = CliRunner().invoke(main, ["fit", "--model", str(path), "--output-dir", str(tmp_path / "p"), *args])
        assert r.exit_code == 2 and msg in r.output


def test_indicator_chains_recover_ising_coupling():
    from ising_moe.fit.pipeline.indicators import compare_indicators

    model = PottsChain.ising(40, coupling=0.6, field=0.1 * np.sin(np.arange(40) / 5))
    x = exact.sample(model, 1500, rng=13)
    res = compare_indicators(x[:, :, None], np.ones(x.shape, bool), np.full(len(x), 40), 2, seed=0)
    assert abs(res.coupling[1] - 0.6) <= 5 * res.coupling_error[1]
    assert res.coupling[0] == pytest.approx(res.coupling[1], rel=1e-6)  # the two indicators are one chain
    assert np.all(res.gain > 0) and abs(res.fitted_c1[1] - res.empirical_c1[1]) < 0.02


def test_fit_pipeline_top_k(tmp_path):
    from ising_moe.data import ExpertSequences
    from ising_moe.fit.pipeline import fit_expert_data

    rng = np.random.default_rng(14)
    first = exact.sample(PottsChain.potts(24, 4, coupling=1.0), 200, rng=15)
    second = (first + 1 + rng.integers(0, 3, size=first.shape)) % 4
    experts = np.stack([first, second], axis=-1)[:, None]
    data = ExpertSequences(experts, np.ones(first.shape, bool), 4, attrs={"model_id": "t", "weights": "random-init"})
    report = fit_expert_data(data, variants=("potts",), n_bootstrap=0, mc_sweeps=0, max_distance=4)
    layer = report.layers[0]
    assert layer.indicators is not None and layer.indicators.coupling.shape == (4,)
    assert layer.gain["potts"] > 0


def test_fit_independent_of_thread_count_and_kernel_parity():
    import numba

    from ising_moe.fit import _kernels as K

    rng = np.random.default_rng(16)
    x = rng.integers(0, 3, size=(120, 20))
    mask = _holes(x, rng, 0.3)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = ChainMaxLikelihood(couplings="full", standard_errors=False).fit(x, mask).result_.theta
    finally:
        numba.set_num_threads(old)
    many = ChainMaxLikelihood(couplings="full", standard_errors=False).fit(x, mask).result_.theta
    np.testing.assert_array_equal(one, many)
    # the composite-window kernel against its pure-Python self
    h = rng.normal(size=(7, 3))
    j = rng.normal(size=(2, 1, 3, 3))
    tables = K.weights(h, j)
    allowed = np.array([-1, 2, -1, -1, 0, -1, 1])
    out = []
    for fn in (K.chain_moments, K.chain_moments.py_func):
        site, pair = np.zeros((7, 3)), np.zeros((2, 1, 3, 3))
        out.append((fn(*tables, allowed, 1.0, site, pair, True), site, pair))
    assert out[0][0] == pytest.approx(out[1][0], rel=1e-13)
    np.testing.assert_allclose(out[0][1], out[1][1], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(out[0][2], out[1][2], rtol=1e-12, atol=1e-15)
