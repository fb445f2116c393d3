"""The lattice analysis (``isingmoe fit --lattice``): planted cross-layer coupling seen in one pair
only, MI model vs data, files with provenance, bad input."""

import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from ising_moe.cli import main
from ising_moe.data import ExpertSequences, save_experts
from ising_moe.errors import ConvergenceWarning, InvalidParameterError
from ising_moe.fit.lattice import ExactLattice, LatticeLayout
from ising_moe.fit.lattice.analysis import analyze_lattice, crosslayer_mutual_information, mutual_information

ATTRS = {"model_id": "test/lattice", "weights": "random-init"}
LAM, Q, S, N = 3, 3, 60, 24


def _planted_sequences(n_seq=S, n=N):
    """Layers 0-1 coupled across (strongly), layers 1-2 not; token fields from 3 token ids."""
    lay = LatticeLayout(LAM, Q, n_rows=3, couplings="potts", cross_range=1)
    rng = np.random.default_rng(0)
    theta = np.zeros(lay.n_params)
    theta[lay.slices["token"]] = 0.8 * rng.normal(size=lay.slices["token"].stop)
    theta[lay.slices["coupling"]] = 0.6
    cross = np.zeros((2, Q, Q))
    cross[0] = 1.5 * (np.eye(Q) - 1.0 / Q)
    theta[lay.slices["cross"]] = lay.project_parameters({"token": np.zeros((LAM, 3, Q)),
                                                         "coupling": np.zeros((LAM, Q, Q)),
                                                         "cross": cross})[lay.slices["cross"]]
    tokens = rng.integers(0, 3, (n_seq, n))
    x = ExactLattice(lay, theta).sample(tokens, np.full(n_seq, n), rng)
    experts = x[..., None]  # (S, layers, positions, top_k = 1)
    return ExpertSequences(experts, np.ones((n_seq, n), bool), Q, token_ids=tokens, attrs=ATTRS)


@pytest.fixture(scope="module")
def report():
    return analyze_lattice(_planted_sequences(), method="exact", couplings="potts", token_rows=3, l2=0.01,
                           gof_distance=6, n_draws=4, n_bootstrap=30, seed=1)


def test_the_planted_pair_gains_and_the_other_does_not(report):
    g, e = report.pair_gain, report.pair_gain_error
    assert g[0] / e[0] > 5
    assert abs(g[1]) / e[1] < 4
    assert report.full_gain > 0
    # model MI on the test tokens beside the empirical: the coupled pair within 4 errors, and large
    assert abs(report.mi_model[0, 1] - report.mi_empirical[0, 1]) < 4 * report.mi_empirical_error[0, 1]
    assert report.mi_empirical[0, 1] > 10 * report.mi_empirical[1, 2]
    assert report.strength_cross[0] > 3 * report.strength_cross[1]
    assert np.isfinite(report.correlation_model).all()


def test_mutual_information_matches_closed_form():
    assert mutual_information(np.eye(4)) == pytest.approx(2.0)
    assert mutual_information(np.ones((3, 5))) == pytest.approx(0.0, abs=1e-15)
    data = _planted_sequences()
    res = crosslayer_mutual_information(data, n_bootstrap=10)
    x = data.experts[:, :, :, 0]
    joint = np.zeros((Q, Q))
    np.add.at(joint, (x[:, 0].ravel(), x[:, 1].ravel()), 1)
    assert res["mi"][0, 1] == pytest.approx(mutual_information(joint), rel=1e-12)


def test_cli_writes_the_lattice_beside_the_fit(tmp_path):
    save_experts(_planted_sequences(20, 8), tmp_path / "d.h5")  # small: the per-layer fits run too
    out = tmp_path / "out"
    args = ["fit", "--model", str(tmp_path / "d.h5"), "-o", str(out), "--variants", "potts", "--bootstrap", "2",
            "--max-distance", "3", "--no-decomposition", "--lattice", "--lattice-method", "pseudo-likelihood"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "lattice (pseudo-likelihood" in r.output
    doc = json.loads((out / "summary.json").read_text())
    assert doc["lattice"]["adjacent_pairs"][0]["layers"] == [0, 1]
    assert doc["params"]["lattice"]["method"] == "pseudo-likelihood"
    with h5py.File(out / "lattice.h5") as f:
        assert f.attrs["finished"] and f.attrs["kind"] == "lattice" and "ising_moe_version" in f.attrs
        assert f["pair_gain"].shape == (2,) and f["fit/cross_couplings"].shape == (2, Q, Q)
    assert (out / "lattice.png").is_file() and (out / "lattice.pdf").is_file()


def test_bad_input_exits_2_with_one_line(tmp_path):
    d = _planted_sequences()
    one = ExpertSequences(d.experts[:, :1], d.mask, Q, token_ids=d.token_ids, attrs=ATTRS)
    save_experts(one, tmp_path / "one.h5")
    r = CliRunner().invoke(main, ["fit", "--model", str(tmp_path / "one.h5"), "-o", str(tmp_path / "o"),
                                  "--variants", "potts", "--lattice"])
    assert r.exit_code == 2 and "two MoE layers" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o" / "fit.h5").exists()
    no_tokens = ExpertSequences(d.experts, d.mask, Q, attrs=ATTRS)
    save_experts(no_tokens, tmp_path / "nt.h5")
    r = CliRunner().invoke(main, ["fit", "--model", str(tmp_path / "nt.h5"), "-o", str(tmp_path / "o2"),
                                  "--variants", "potts", "--lattice"])
    assert r.exit_code == 2 and "token ids" in r.output and not (tmp_path / "o2" / "fit.h5").exists()
    with pytest.raises(InvalidParameterError, match="method"):
        analyze_lattice(d, method="magic")


def test_a_whole_lattice_fit_that_did_not_converge_is_flagged(report):
    """Monte Carlo learning cut short (one window of 10 iterations from the pseudo-likelihood start):
    the report says its model numbers come from a fit still moving; a converged fit carries no flag."""
    with pytest.warns(ConvergenceWarning):
        short = analyze_lattice(_planted_sequences(), method="monte-carlo", token_rows=3, l2=0.01, gof_distance=6,
                                n_draws=1, n_bootstrap=5, mc_options={"window": 10, "max_windows": 1, "step": 1e-4},
                                seed=1)
    assert not short.fit.success and not short.summary()["whole_lattice_converged"]
    assert any(line.lstrip().startswith("FLAG: the whole-lattice fit") for line in short.lines())
    assert report.summary()["whole_lattice_converged"]
    assert not any("FLAG" in line for line in report.lines())
