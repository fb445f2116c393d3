"""Few sequences, ragged lengths, top-k, many layers: no crash, no warning, only supported numbers (issues 20, 21)."""

from __future__ import annotations

import math
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ising_moe import PottsChain, exact
from ising_moe import measure as M
from ising_moe.cli import main
from ising_moe.data import ExpertSequences

sys.path.insert(0, str(Path(__file__).parent))
from real_trace import real_trace  # noqa: E402


def _uncorrelated(seed, q, n_seq):
    """Independent sites with position-dependent rates, ragged lengths 50-300: no correlation at all."""
    rng = np.random.default_rng([seed, q, n_seq])
    lengths = rng.integers(50, 301, size=n_seq)
    n = int(lengths.max())
    h = 1.5 * np.sin(np.arange(n)[:, None] / rng.uniform(5, 40) + rng.uniform(0, 6, size=q)) + rng.normal(0, 1, q)
    p = np.exp(h)
    p /= p.sum(axis=1, keepdims=True)
    x = np.minimum((p.cumsum(axis=1)[None] < rng.random((n_seq, n, 1))).sum(axis=2), q - 1)
    return x, np.arange(n)[None, :] < lengths[:, None]


def _symmetric_chain(n_sites, q, xi):
    """Zero-field symmetric Potts chain: C(r) exactly A exp(-r / xi) on an open chain."""
    rho = math.exp(-1.0 / xi)
    return PottsChain.potts(n_sites, q, coupling=math.log((1 + (q - 1) * rho) / (1 - rho)))


@pytest.mark.parametrize("q,n_seq", [(8, 16), (64, 8)])
def test_no_window_and_no_xi_on_uncorrelated_data(q, n_seq):
    """The old window (longest run of C(r) > 2 se anywhere in 1..64) was non-empty in most data sets."""
    windows = xis = 0
    for seed in range(40):
        x, m = _uncorrelated(seed, q, n_seq)
        c = M.correlation_function(x, m, q, 64, n_null=0)
        res = M.fit_correlation_length(c.distances, c.values, c.errors, influence=c.influence, n_bootstrap=50, rng=0,
                                       n_effective=c.n_effective)
        windows += res.window[1] >= res.window[0]
        xis += res.success
    assert xis == 0
    assert windows <= 6, windows  # nominal 5% of 40 = 2; P(>= 7 | 5%) < 0.5%


def test_errors_of_ragged_data_are_calibrated():
    """z of C(r) on uncorrelated ragged data has sd ~ 1 (was 0.5: sequences of different lengths counted as noise)."""
    z = []
    for seed in range(60):
        x, m = _uncorrelated(seed, 8, 48)
        c = M.correlation_function(x, m, 8, 4, n_null=0)
        z.append(c.values[1:] / c.errors[1:])
    sd = np.std(z)
    assert 0.8 < sd < 1.25, sd


def test_too_few_sequences_give_no_window_and_say_why():
    x, m = _uncorrelated(0, 8, 3)
    x[:, 1:] = x[:, :-1]  # strongly correlated, but 3 sequences cannot show it
    c = M.correlation_function(x, m, 8, 16, n_null=0)
    res = M.fit_correlation_length(c.distances, c.values, c.errors, influence=c.influence, rng=0)
    assert res.window == (1, 0) and not res.success and "too few to tell C(r) from noise" in res.message


def test_exact_exponential_is_not_called_non_exponential_and_xi_is_unbiased():
    """xi = 30, N = 500: the uncorrected GLS called it "not exponential" in 78% of data sets, xi biased up."""
    model = _symmetric_chain(256, 4, 30.0)
    truth = exact.correlation_length(model)
    for seed in range(2):
        x = exact.sample(model, 500, rng=seed)
        c = M.correlation_function(x, None, 4, 200, n_null=0)
        res = M.fit_correlation_length(c.distances, c.values, c.errors, influence=c.influence, rng=seed)
        assert res.p_value > 0.01 and res.success, res.message
        assert abs(res.xi - truth) < 3 * res.error


def test_two_decays_are_not_reported_as_one():
    """C(r) = two exponentials with very different lengths: flagged, not one xi."""
    r = np.arange(41)
    values = 0.3 * np.exp(-r / 1.5) + 0.02 * np.exp(-r / 15.0)
    rng = np.random.default_rng(0)
    phi = rng.normal(size=(400, 41)) * 2e-4 * np.sqrt(400 * 399) * (0.2 + np.exp(-r / 20))
    phi -= phi.mean(axis=0)
    errors = np.sqrt((phi**2).sum(axis=0) / (400 * 399))
    res = M.fit_correlation_length(r, values, errors, influence=phi, rng=0)
    assert not res.success and "exponential" in res.message, res.message


def test_short_window_two_decays_are_flagged_not_reported_as_xi():
    """Two decays of equal weight (xi 1.44 and 0.62) seen on a window of 6-8 distances: too short for the
    split test, and the goodness of fit misses some; the single exponential (1.18 +- 0.02) was reported
    as xi. The curvature test flags it: no success misses the transfer-matrix xi."""
    v1 = np.array([1.0, -1.0, 0.0]) / math.sqrt(2)
    v2 = np.array([1.0, 1.0, -2.0]) / math.sqrt(6)
    transition = 1 / 3 + 0.5 * np.outer(v1, v1) + 0.2 * np.outer(v2, v2)  # eigenvalues 1, 0.5, 0.2
    model = PottsChain(96, np.log(transition), np.zeros(3))  # the stationary chain: C(r) = (0.5^r + 0.2^r) / 3
    truth = exact.correlation_length(model)
    assert truth == pytest.approx(-1 / math.log(0.5))
    for seed in range(10):
        x = exact.sample(model, 1500, rng=seed)
        c = M.correlation_function(x, None, 3, 30, n_null=0)
        res = M.fit_correlation_length(c.distances, c.values, c.errors, influence=c.influence, rng=seed)
        assert res.window[1] < 2 * 4 + 1  # a short window: the split test does not apply
        assert not res.success and "exponential" in res.message, (seed, res.xi, res.error, res.message)


def test_curvature_test_keeps_one_exponential():
    """Exactly exponential C(r) on short and long windows: the curvature test is not the reason for n/a."""
    flagged = 0
    for seed in range(20):
        model = PottsChain.potts(96, 3, coupling=1.6)
        x = exact.sample(model, 300, rng=100 + seed)
        c = M.correlation_function(x, None, 3, 30, n_null=0)
        res = M.fit_correlation_length(c.distances, c.values, c.errors, influence=c.influence, n_bootstrap=50,
                                       rng=seed)
        flagged += "bends upward" in res.message
    assert flagged <= 2


def test_measure_and_fit_share_one_empirical_xi():
    """Same data, same options: the same C(r), window and xi (the two commands contradicted each other)."""
    from ising_moe.fit.pipeline import compare_layer

    model = PottsChain.potts(40, 3, coupling=1.4)
    x = exact.sample(model, 120, rng=3)
    data = ExpertSequences(x[:, None, :, None], np.ones(x.shape, bool), 3, attrs={"model_id": "t"})
    st = M.measure(data, max_distance=20, block_sizes=(), n_bootstrap=200, probe=False, seed=7).layers[0]
    lc = compare_layer(x, np.ones(x.shape, bool), np.full(120, 40), 3, 0, variants=("potts",), max_distance=20,
                       n_bootstrap=0, mc_sweeps=0, seed=11, xi_seed=7)
    np.testing.assert_array_equal(st.correlation.values, lc.empirical)
    np.testing.assert_array_equal(st.correlation.errors, lc.empirical_error)
    assert st.xi == lc.xi_empirical and st.xi.success


def test_within_sequence_null_does_not_call_persistence_composition():
    """Pure Markov chain, xi = 30, L = 128: the null keeps most of sum C(r), and that is persistence."""
    from ising_moe.report.measure import _explain, null_fractions

    model = _symmetric_chain(128, 4, 30.0)
    x = exact.sample(model, 400, rng=5)
    data = ExpertSequences(x[:, None, :, None], np.ones(x.shape, bool), 4, attrs={"model_id": "markov"})
    st = M.measure(data, max_distance=127, block_sizes=(), n_bootstrap=100, probe=False, seed=0).layers[0]
    f = null_fractions(st)
    text = _explain(st, f)
    assert st.xi.success and f["sequence"] > 0.8  # the null keeps it all: the old summary said "composition"
    assert abs(f["sequence"] - f["persistence"]) < 0.25
    assert "not sequence composition" in text and "is sequence composition" not in text


def test_banded_fisher_with_uninformative_sites():
    """Ragged chains: sites no training sequence reaches have no information (was: zero-size array in _band)."""
    from ising_moe.fit.data import ChainData
    from ising_moe.fit.max_likelihood import ChainMaxLikelihood

    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, size=(30, 40))
    lengths = np.full(30, 8)
    lengths[0] = 40
    data = ChainData.from_arrays(x, np.arange(40)[None, :] < lengths[:, None], lengths, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chain = ChainMaxLikelihood(couplings="potts").fit(data.subset(np.arange(1, 30)))
    assert chain.result_.theta_stderr is not None


def test_xi_figure_without_any_xi(tmp_path):
    """No layer with a correlation length: the xi figure is drawn (was: log axis with nothing, exit 1)."""
    import dataclasses

    from ising_moe.fit.pipeline import fit_expert_data
    from ising_moe.report import fit_figures

    rng = np.random.default_rng(0)
    data = ExpertSequences(rng.integers(0, 3, size=(40, 1, 12, 1)), np.ones((40, 12), bool), 3,
                           attrs={"model_id": "t"})
    rep = fit_expert_data(data, variants=["potts"], n_bootstrap=0, mc_sweeps=0, max_distance=4)
    layers = [dataclasses.replace(lc, xi_fitted={k: math.nan for k in lc.xi_fitted}) for lc in rep.layers]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = fit_figures(dataclasses.replace(rep, layers=layers), tmp_path)
    assert any(p.name == "xi.png" for p in paths)


def test_real_trace_scenario_runs_without_traceback_or_warning(tmp_path):
    """4 requests of 78-252 tokens, 32 layers, top-2 of 8, imported from npz: measure every layer, fit some."""
    np.savez(tmp_path / "trace.npz", **real_trace())
    runner = CliRunner()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = runner.invoke(main, ["import", str(tmp_path / "trace.npz"), "--format", "npz", "-o",
                                   str(tmp_path / "trace.h5")])
        assert res.exit_code == 0, res.output
        res = runner.invoke(main, ["measure", str(tmp_path / "trace.h5"), "--no-probe", "--bootstrap", "20",
                                   "--block-sizes", "16", "--max-distance", "32"], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        out = res.output
        rows = [line for line in out.splitlines() if re.match(r"^\s+\d+\s+8\s", line)]
        assert len(rows) == 32 and all(re.match(r"^\s+\d+\s+8\s+n/a\s", line) for line in rows)  # 4 sequences: no xi
        assert "decays exponentially" not in out and "sequence composition (each" not in out.replace(
            "cannot tell sequence composition (each", "")
        res = runner.invoke(main, ["fit", "--model", str(tmp_path / "trace.h5"), "--layers", "0,31", "--bootstrap",
                                   "2", "--variants", "potts", "-o", str(tmp_path / "fit")], catch_exceptions=False)
        assert res.exit_code == 0, res.output


def _open_markov(n_seq, n, q, xi, rng, trend=0.0):
    """Exact samples of the stationary open chain with C(r) = (1 - 1/q) exp(-r / xi); ``trend`` tilts
    the redraws of states 0 and 1 linearly along the sequence (a planted position effect)."""
    keep = rng.random((n_seq, n)) < math.exp(-1.0 / xi)
    keep[:, 0] = False
    p = np.exp(trend * np.outer(np.linspace(-1, 1, n), np.eye(q)[0] - np.eye(q)[1]))
    p /= p.sum(axis=1, keepdims=True)
    fresh = np.minimum((p.cumsum(axis=1)[None] < rng.random((n_seq, n, 1))).sum(axis=2), q - 1)
    last = np.maximum.accumulate(np.where(keep, 0, np.arange(n)[None, :]), axis=1)
    return np.take_along_axis(fresh, last, axis=1)


def test_position_test_is_calibrated_on_open_correlated_chains():
    """xi = 30, 16 blocks of 4: rotating each sequence rejected 9.5% (by positions) or 8.3% (by whole
    blocks) of position-independent data sets at the 5% level; the reflection test keeps 5%."""
    n_sets, hits = 600, 0
    for seed in range(n_sets):
        rng = np.random.default_rng([seed, 64])
        x = _open_markov(40, 64, 4, 30.0, rng)
        hits += M.position_dependence(x, None, 4, 16, n_shuffles=99, n_bootstrap=2, rng=rng).p_value <= 0.05
    assert abs(hits / n_sets - 0.05) < 2.5 * math.sqrt(0.05 * 0.95 / n_sets), hits / n_sets


def test_position_test_power_masks_and_one_sequence():
    rng = np.random.default_rng(1)
    x = _open_markov(40, 128, 4, 30.0, rng, trend=0.6)
    assert M.position_dependence(x, None, 4, 16, rng=0).p_value <= 0.02
    lengths = rng.integers(60, 129, size=40)  # ragged: the trend is still seen, the remainder is left out
    mask = np.arange(128)[None, :] < lengths[:, None]
    test = M.position_dependence(x, mask, 4, 12, rng=0)
    assert test.p_value <= 0.02 and test.block_length == 10 and "last 8 positions" in test.message
    # one sequence in the blocks (the other's tokens are all in the remainder): its MI is the same
    # reflected or not, so no p-value (the rotation test said 1.0)
    one = M.position_dependence(x[:2], np.arange(128)[None, :] >= [[0], [120]], 4, 12, rng=0)
    assert math.isnan(one.p_value) and math.isnan(one.mi_excess) and one.n_sequences == 1
    assert "at least 2" in one.message
