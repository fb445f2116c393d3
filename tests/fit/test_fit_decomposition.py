"""The decomposition of ``isingmoe fit`` (issue 14): token, position given the token, neighbours,
sequence topic, on data simulated from known conditional chains and mixtures, and the CLI."""

import json
import math

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from ising_moe.cli import main
from ising_moe.data import ExpertSequences, save_experts
from ising_moe.fit.conditional import sample_chains
from ising_moe.fit.pipeline.decomposition import decompose_layer

ATTRS = {"model_id": "test/chain", "weights": "random-init"}
Q, N, VOCAB = 4, 32, 30


def _simulate(n_seq, *, position=True, weights=None, seed=0):
    """Known conditional chain: token fields, (optional) position fields, Potts coupling; with
    ``weights`` a mixture of components that shift the expert biases."""
    rng = np.random.default_rng(seed)
    tok = 1.2 * rng.normal(size=(VOCAB, Q))
    pos = np.zeros((N, Q))
    if position:
        pos = 0.8 * np.sin(np.arange(N)[:, None] / 4.0 + np.arange(Q)[None, :])
    pos -= pos.mean(axis=1, keepdims=True)
    coupling = 0.5 * (np.eye(Q) - 1.0 / Q)
    tokens = rng.integers(0, VOCAB, size=(n_seq, N))
    if weights is not None:
        bias = 1.2 * np.array([[1, -1, 0, 0], [-1, 1, 0, 0]], float)
        x, _ = sample_chains(pos[None] + bias[:, None], tok, coupling, tokens, weights=weights, rng=rng)
    else:
        x, _ = sample_chains(pos, tok, coupling, tokens, rng=rng)
    return x, tokens


def _decompose(x, tokens, **kwargs):
    mask = np.ones(x.shape, bool)
    return decompose_layer(x, mask, np.full(len(x), N), tokens, Q, 0, seed=1, token_rows=VOCAB + 5,
                           gof_distance=8, **kwargs)


def test_token_gain_and_position_beyond_token_are_detected():
    x, tokens = _simulate(400, position=True)
    dec = _decompose(x, tokens)
    g, e = dec.gain_of("+token")
    assert g > 5 * e and g > 0.1
    g, e = dec.gain_of("+token+position")
    assert g > 3 * e
    assert dec.position_lr_p < 1e-6 and dec.position_lr_dof == (N - 1) * (Q - 1)
    g, e = dec.gain_of("+couplings")  # the true J = 0.5 is seen beyond tokens and position
    assert g > 3 * e
    assert dec.converged[:6].all() and "+range-2" in dec.skipped
    assert "token identity over global expert rates:" in dec.sentence() and "LR test" not in dec.sentence()


def test_position_beyond_token_is_not_found_when_absent():
    # negative control: same tokens and couplings, no position fields
    x, tokens = _simulate(400, position=False)
    dec = _decompose(x, tokens)
    assert dec.position_lr_p > 0.01
    g, e = dec.gain_of("+token+position")
    assert g < 2 * e  # free position fields only overfit
    assert dec.gain_of("+token")[0] > 0.1


def test_latent_row_gains_on_a_mixture_and_not_without_one():
    x, tokens = _simulate(300, position=False, weights=[0.5, 0.5], seed=2)
    dec = _decompose(x, tokens)
    g, e = dec.gain_of("+sequence latent")
    assert g > 5 * e
    assert np.all(dec.component_weights > 0.3)
    # the true K by validation likelihood, inside the range tried (K = 3 fitted and worse)
    assert dec.n_components == 2 and not dec.latent["at_edge"]
    assert dec.latent["validation_bits_per_token"]["bias:K=3"] < dec.latent["validation_bits_per_token"]["bias:K=2"]
    x0, tokens0 = _simulate(300, position=False, seed=2)  # negative control: one component
    g0, e0 = _decompose(x0, tokens0).gain_of("+sequence latent")
    assert g0 < 3 * e0


def test_best_model_reproduces_c_of_r_on_its_own_data():
    x, tokens = _simulate(400, position=True, seed=3)
    dec = _decompose(x, tokens, range2=True)
    assert np.isfinite(dec.gain).sum() == 6
    gof = dec.gof
    assert list(gof["distances"]) == list(range(1, 9)) and np.all(np.isfinite(gof["model"]))
    assert gof["max_abs_z"] < 4 and gof["p_value"] > 1e-3  # a correct model leaves noise


def test_cli_fit_produces_table_figure_and_strict_json(tmp_path):
    x, tokens = _simulate(120, position=True, seed=4)
    data = ExpertSequences(x[:, None, :, None], np.ones(x.shape, bool), Q, token_ids=tokens, attrs=ATTRS)
    save_experts(data, tmp_path / "d.h5")
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["fit", "--model", str(tmp_path / "d.h5"), "-o", str(out), "--variants", "potts",
                                  "--bootstrap", "0", "--max-distance", "6"])
    assert r.exit_code == 0, r.output
    assert "What routing depends on" in r.output and "token identity over global expert rates" in r.output
    assert "best model" in r.output
    assert (out / "decomposition.png").is_file() and (out / "decomposition.pdf").is_file()
    text = (out / "summary.json").read_text()
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    dec = doc["layers"][0]["decomposition"]
    assert dec["rows"][0] == "independent" and dec["gain_bits_per_token"][0] is None
    assert dec["goodness_of_fit"]["distances"] == list(range(1, 7))
    assert doc["params"]["decomposition"] is True
    with h5py.File(out / "fit.h5") as f:
        g = f["layer_0/decomposition"]
        assert list(g.attrs["rows"]) == dec["rows"] and g["heldout"].shape == (len(dec["rows"]),)
        assert math.isclose(g["gain"][2], dec["gain_bits_per_token"][2])
        assert "goodness_of_fit" in g and f.attrs["finished"]
    r = CliRunner().invoke(main, ["fit", "--model", str(tmp_path / "d.h5"), "-o", str(tmp_path / "o2"),
                                  "--variants", "potts", "--bootstrap", "0", "--max-distance", "6",
                                  "--no-decomposition"])
    assert r.exit_code == 0 and "What routing depends on" not in r.output
    save_experts(ExpertSequences(x[:, None, :, None], np.ones(x.shape, bool), Q, attrs=ATTRS), tmp_path / "n.h5")
    r = CliRunner().invoke(main, ["fit", "--model", str(tmp_path / "n.h5"), "-o", str(tmp_path / "o3"),
                                  "--decomposition", "--bootstrap", "0"])
    assert r.exit_code == 2 and "token ids" in r.output and not (tmp_path / "o3" / "fit.h5").exists()


def test_decomposition_figure_names_subject_has_units_and_draws_no_nan(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from ising_moe.data import subject_label
    from ising_moe.fit.pipeline import fit_expert_data
    from ising_moe.report import fit as report_module

    x, tokens = _simulate(100, position=True, seed=5)
    data = ExpertSequences(x[:, None, :, None], np.ones(x.shape, bool), Q, token_ids=tokens, attrs=ATTRS)
    report = fit_expert_data(data, variants=("potts",), n_bootstrap=0, mc_sweeps=0, max_distance=6, max_range=1)
    # q = 4: the range-2 row is fitted by default (cheap); drop it to check that a skipped row is not drawn
    dec = report.layers[0].decomposition
    i = dec.rows.index("+range-2")
    assert "+range-2" not in dec.skipped and math.isfinite(dec.gain[i])
    dec.gain[i] = math.nan
    dec.skipped["+range-2"] = "not fitted"
    figures = {}
    monkeypatch.setattr(report_module, "save_figure", lambda fig, stem: figures.setdefault(stem.name, fig) and [])
    report_module.fit_figures(report, tmp_path)
    fig = figures["decomposition"]
    assert subject_label(ATTRS) in fig._suptitle.get_text() and "bits/token" in fig._suptitle.get_text()
    for ax in fig.axes:
        assert "bits/token" in ax.get_ylabel()
        assert all(np.isfinite(p.get_height()) and np.isfinite(p.get_y()) for p in ax.patches)
        assert not any("range-2" in t.get_text() for t in ax.get_legend().get_texts())
    assert "not fitted: +range-2" in fig.axes[0].get_title()
    corr = figures["correlation"].axes[0]
    assert any("best conditional" in line.get_label() for line in corr.get_lines())


def test_decomposition_runs_in_the_layer_tasks_identically_on_any_executor():
    from ising_moe.executors import SerialExecutor
    from ising_moe.fit.pipeline import fit_expert_data

    x, tokens = _simulate(120, position=True, seed=6)
    x2, _ = _simulate(120, position=False, seed=7)
    data = ExpertSequences(np.stack([x, x2], axis=1)[..., None], np.ones(x.shape, bool), Q, token_ids=tokens,
                           attrs=ATTRS)
    options = {"variants": ("potts",), "n_bootstrap": 0, "mc_sweeps": 0, "max_distance": 6}
    serial = fit_expert_data(data, executor=SerialExecutor(), **options)
    parallel = fit_expert_data(data, processes=2, **options)
    for a, b in zip(serial.layers, parallel.layers):
        np.testing.assert_array_equal(a.decomposition.heldout, b.decomposition.heldout)
        np.testing.assert_array_equal(a.decomposition.gof["model"], b.decomposition.gof["model"])
    assert serial.params["decomposition"] and serial.params["decomposition_gof_distance"] == 6
