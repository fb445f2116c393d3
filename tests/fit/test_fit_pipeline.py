"""The fit pipeline and its report: failed variants, xi rules, capacity drops, messages, figures."""

import json
import math

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from ising_moe import InvalidParameterError, PottsChain, exact
from ising_moe.cli import main
from ising_moe.data import ExpertSequences, save_experts, subject_label
from ising_moe.fit import ChainMaxLikelihood, ChainPseudoLikelihood
from ising_moe.fit.pipeline import fit_expert_data
from ising_moe.fit.pipeline.layer import VARIANTS, compare_layer

ATTRS = {"model_id": "test/chain", "weights": "random-init"}


def _chain_data(n_seq=150, n=24, q=3, seed=0):
    model = PottsChain.potts(n, q, coupling=0.9, field=0.3 * np.random.default_rng(seed).normal(size=(n, q)))
    return exact.sample(model, n_seq, rng=seed + 1)


def test_failing_variant_is_reported_and_the_others_finish(tmp_path, monkeypatch):
    def boom(self, *args, **kwargs):
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(ChainPseudoLikelihood, "fit", boom)
    x = _chain_data()
    save_experts(ExpertSequences(x, np.ones(x.shape, bool), 3, attrs=ATTRS), tmp_path / "d.h5")
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["fit", "--model", str(tmp_path / "d.h5"), "--output-dir", str(out),
                                  "--variants", "potts,pseudo-likelihood", "--bootstrap", "2", "--max-distance", "4"])
    assert r.exit_code == 0, r.output
    assert "variant pseudo-likelihood failed (ZeroDivisionError" in r.output and " failed " in r.output
    doc = json.loads((out / "summary.json").read_text())
    fits = doc["layers"][0]["fits"]
    assert fits["pseudo-likelihood"]["failed"] and not fits["pseudo-likelihood"]["success"]
    assert fits["potts"]["success"] and doc["layers"][0]["heldout_gain_bits_per_token"]["potts"] > 0
    with h5py.File(out / "fit.h5") as f:
        v = f["layer_0/variant_pseudo-likelihood"].attrs
        assert v["failed"] and "ZeroDivisionError" in v["error"]


def test_xi_is_zero_without_couplings_and_na_when_not_converged(monkeypatch):
    monkeypatch.setitem(VARIANTS, "stalled", (ChainMaxLikelihood, {"couplings": "full", "max_iter": 1}))
    x = _chain_data()
    lc = compare_layer(x, np.ones(x.shape, bool), np.full(len(x), x.shape[1]), 3, 0,
                       variants=("potts", "stalled"), n_bootstrap=0, mc_sweeps=0, max_distance=6)
    assert lc.xi_fitted["independent"] == 0.0 and lc.xi_spectral["independent"] == 0.0
    assert "by definition" in lc.xi_fitted_note["independent"]
    assert not lc.fits["stalled"].success
    assert math.isnan(lc.xi_fitted["stalled"]) and lc.xi_fitted_note["stalled"] == "fit did not converge"
    assert 0.3 < lc.xi_fitted["potts"] < 5 and lc.xi_fitted_note["potts"] == ""


def _switch_like(rng, n_seq=1000, n=32, q=4):
    """Router choices independent of position; a token is dropped when its expert (0) is 'full',
    which happens late in the sequence: drops that are not missing at random."""
    x = rng.integers(0, q, size=(n_seq, n))
    late = np.arange(n)[None, :] >= n // 2
    dropped = (x == 0) & late & (rng.random(x.shape) < 0.8)
    return ExpertSequences(x[:, None, :, None], np.ones(x.shape, bool), q, dropped=dropped[:, None, :],
                           attrs={"model_id": "test/switch", "weights": "random-init"})


def test_router_policy_is_default_and_the_drops_position_effect_is_reported():
    from ising_moe.report import fit_summary

    data = _switch_like(np.random.default_rng(3))
    report = fit_expert_data(data, variants=("potts",), n_bootstrap=0, mc_sweeps=0, max_distance=4)
    assert report.params["dropped"] == "router"
    drops = report.layers[0].drops
    assert drops is not None and 0.05 < drops.dropped_fraction < 0.2
    # excluding drops creates a position effect; with the router's choice there is none
    assert drops.gain_exclude > 5 * drops.error_exclude
    assert drops.gain_router < 2 * drops.error_router
    assert drops.produced_by_drops > 5 * drops.produced_error
    _, lines = fit_summary(report)
    text = "\n".join(lines)
    assert "capacity drops" in text and "bits/token of position effect" in text


def test_one_token_sequences_get_a_clear_message():
    x = np.zeros((20, 8), dtype=int)
    mask = np.zeros((20, 8), bool)
    mask[:, 0] = True  # every sequence has one valid token
    data = ExpertSequences(x, mask, 2, attrs=ATTRS)
    with pytest.raises(InvalidParameterError, match="only 0 of 20 sequences have two or more valid tokens"):
        fit_expert_data(data, variants=("potts",), n_bootstrap=0, mc_sweeps=0)


def test_summary_leads_with_sentences_and_uses_bits(monkeypatch):
    from ising_moe.report import fit_summary

    x = _chain_data()
    report = fit_expert_data(ExpertSequences(x, np.ones(x.shape, bool), 3, attrs=ATTRS), variants=("potts",),
                             n_bootstrap=2, mc_sweeps=0, max_distance=4)
    payload, lines = fit_summary(report)
    first = [ln for ln in lines if ln.startswith("Layer 0:")]
    assert first and "bits/token" in first[0] and lines.index(first[0]) < next(
        i for i, ln in enumerate(lines) if ln.lstrip().startswith("layer"))
    assert payload["units"]["gain"] == "bits/token" and "millinat" not in "\n".join(lines)
    assert payload["subject"] == "test/chain (random-init weights, not trained)"


def test_fit_figures_name_the_subject_have_units_and_draw_no_nan(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from ising_moe.report import fit as report_module

    def boom(self, *args, **kwargs):
        raise ZeroDivisionError("x")

    monkeypatch.setattr(ChainPseudoLikelihood, "fit", boom)
    x = _chain_data()
    report = fit_expert_data(ExpertSequences(x, np.ones(x.shape, bool), 3, attrs=ATTRS),
                             variants=("independent", "potts", "full", "pseudo-likelihood"), n_bootstrap=2, mc_sweeps=0,
                             max_distance=4)
    figures = []
    original = report_module.save_figure

    def keep(fig, stem):
        figures.append((stem.name, fig))
        return original(fig, stem)

    monkeypatch.setattr(report_module, "save_figure", keep)
    report_module.fit_figures(report, tmp_path)
    subject = subject_label(ATTRS)
    assert {name for name, _ in figures} >= {"correlation", "xi", "fields", "couplings", "heldout"}
    for name, fig in figures:
        titles = [fig._suptitle.get_text() if fig._suptitle else ""] + [ax.get_title() for ax in fig.axes]
        assert any(subject in t for t in titles), name
        for ax in fig.axes:
            for label in (ax.get_xlabel(), ax.get_ylabel()):
                assert label in ("", "layer", "state", "expert") or "[" in label or "expert" in label, (name, label)
            for line in ax.get_lines():
                assert np.all(np.isfinite(line.get_xydata())), name
            for patch in ax.patches:
                assert np.isfinite(patch.get_height()), name
            for coll in ax.collections:
                for seg in getattr(coll, "get_segments", list)():
                    assert np.all(np.isfinite(seg)), name
    held = dict(figures)["heldout"].axes[0]
    assert "bits/token" in held.get_ylabel()
    assert any("failed" in t.get_text() for t in held.get_legend().get_texts())
