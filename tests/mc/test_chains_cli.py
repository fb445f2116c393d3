"""The chain commands (exact, simulate, sweep) at the front door: help, typed options, strict JSON,
up-front refusal of huge runs, flags on unreliable errors, clear messages."""

import json

import pytest
from click.testing import CliRunner

from ising_moe.cli import main
from ising_moe.cli.chains import _UPDATE_NAMES
from ising_moe.mc import UPDATES


def run(*args):
    return CliRunner().invoke(main, list(args))


def strict_json(text):
    def refuse(name):
        raise ValueError(f"non-JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("command", ["exact", "simulate", "sweep"])
def test_dash_h_is_help(command):
    r = run(command, "-h")
    assert r.exit_code == 0 and "Usage:" in r.output and "--field" in r.output


def test_update_names_match_the_library():
    assert tuple(UPDATES) == _UPDATE_NAMES


def test_exact_json_is_strict_for_an_antiferromagnet():
    r = run("exact", "--ising", "-n", "101", "--beta", "50", "--coupling", "-1", "--periodic", "--json")
    assert r.exit_code == 0, r.output
    doc = strict_json(r.output)
    assert doc["correlation_length"] == pytest.approx(1.344058570908e43, rel=1e-10)  # was Infinity


def test_non_finite_values_become_null_with_a_note():
    # z of an observable with zero error and a mean off the exact value is infinite
    from ising_moe.io import strict_jsonable

    notes = {}
    out = strict_jsonable({"a": [1.0, float("inf")], "b": {"c": float("nan")}}, notes)
    assert out == {"a": [1.0, None], "b": {"c": None}}
    assert notes == {"a[1]": "+inf", "b.c": "nan (undefined)"}


def test_simulate_json_strict_and_flags_unreliable_observables():
    # strongly ordered Ising chain with heat-bath: the chains started in opposite ordered states
    # never meet, so R-hat flags the occupations and the cluster updates are recommended
    r = run("simulate", "--model-kind", "ising", "-n", "64", "-J", "4", "--periodic", "--n-sweeps", "300",
            "--json")
    assert r.exit_code == 0, r.output
    doc = strict_json(r.output)
    rows = {row["observable"]: row for row in doc["observables"]}
    assert {"n_over_tau", "rhat", "flags"} <= set(rows["magnetisation"])
    assert any("R-hat" in f for f in rows["magnetisation"]["flags"])
    assert "magnetisation" in doc["flagged"] and "swendsen-wang or wolff" in doc["advice"]
    text = run("simulate", "--model-kind", "ising", "-n", "64", "-J", "4", "--periodic", "--n-sweeps", "300")
    assert "n/tau" in text.output and "R-hat" in text.output and "! " in text.output
    # negative control: a weakly coupled chain has no flags
    ok = strict_json(run("simulate", "--model-kind", "ising", "-n", "32", "--beta", "0.3", "--json").output)
    assert ok["flagged"] == [] and ok["advice"] is None


def test_sweep_json_strict(tmp_path):
    r = run("sweep", "--model-kind", "ising", "-n", "16", "--beta", "0.2,0.4", "--n-sweeps", "200", "--n-burnin",
            "20", "--max-distance", "1", "-o", str(tmp_path / "s.h5"), "--json")
    assert r.exit_code == 0, r.output
    doc = strict_json(r.output)
    assert doc["n_points"] == 2 and "unreliable_points" in doc


@pytest.mark.parametrize("args,message", [
    (["exact", "-q", "100000"], "memory"),
    (["exact", "-n", "2e9"], "memory"),
    (["simulate", "-q", "100000"], "memory"),
    (["simulate", "-n", "2e9"], "memory"),
    (["simulate", "--n-sweeps", "1e11"], "memory"),
    (["simulate", "-n", "1000000", "--n-sweeps", "1e8", "--max-distance", "0", "--n-chains", "1"], "would take"),
    (["sweep", "--n-sweeps", "1e11", "-o", "never.h5"], "memory"),
    (["sweep", "--beta", "0:1:1000", "--coupling", "0:1:1000", "-o", "never.h5"], "1000000 points"),
    (["sweep", "--x", "temperature", "-o", "never.h5"], "not a sweep parameter"),
    (["sweep", "--observable", "energy", "-o", "never.h5"], "choose one of energy_per_site"),
    (["sweep", "-q", "2,3", "--observable", "magnetisation", "-o", "never.h5"], "not measured at every point"),
    (["simulate", "--model-kind", "long-range", "--max-range", "0"], "max_range (--max-range"),
    (["simulate", "--model-kind", "ising", "--field", "1,2"], "Ising takes one field value"),
    (["exact", "--ising", "--field", "1,2"], "Ising takes one field value"),
    (["simulate", "--n-sweeps", "12.5"], "not an integer"),
    (["simulate", "--beta", "hot"], "not a valid float"),
    (["simulate", "--update", "gibbs"], "gibbs"),
])
def test_refused_up_front_with_one_line(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run(*args)
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output
    assert not (tmp_path / "never.h5").exists() and list(tmp_path.iterdir()) == []


def test_large_grid_runs_with_yes_flag_only_past_the_check(tmp_path, monkeypatch):
    from ising_moe.cli import chains

    monkeypatch.setattr(chains, "MAX_POINTS_UNCONFIRMED", 2)
    args = ["sweep", "-n", "8", "--beta", "0.1,0.2,0.3", "--n-sweeps", "50", "--n-burnin", "5",
            "--max-distance", "1", "-o", str(tmp_path / "g.h5"), "--json"]
    assert run(*args).exit_code == 2
    r = run(*args, "--yes")
    assert r.exit_code == 0, r.output
    assert strict_json(r.output)["n_points"] == 3


def test_simulate_prints_no_zero_error_and_no_infinite_sigma():
    """Issue 20: on a strongly coupled long-range ring every overlap:r is 1 in every sweep. The old
    table printed ``1.000000 ± 0.000000`` and z = ``inf``; a series with no variation carries no
    error: it is printed as a rule-of-three limit, z is n/a, and the row is flagged."""
    r = run("simulate", "--model-kind", "long-range", "-q", "2", "-n", "12", "--beta", "1", "-J", "3",
            "--alpha", "1", "--max-range", "5", "--field", "0,0.05", "--periodic", "--update", "wolff",
            "--n-sweeps", "500", "--n-burnin", "50", "--max-distance", "3")
    assert r.exit_code == 0, r.output
    assert "± 0.000000" not in r.output and "inf" not in r.output
    rows = [line for line in r.output.splitlines() if line.startswith("overlap:")]
    assert len(rows) == 3
    for line in rows:
        assert "> 0.99" in line and "(always)" in line and line.split()[-2] == "n/a" and line.endswith("!")
    assert "! overlap:1: no variation: error not estimable (always)" in r.output
    doc = strict_json(run("simulate", "--model-kind", "long-range", "-q", "2", "-n", "12", "-J", "3",
                          "--alpha", "1", "--max-range", "5", "--periodic", "--update", "wolff",
                          "--n-sweeps", "500", "--n-burnin", "50", "--max-distance", "1", "--json").output)
    row = next(o for o in doc["observables"] if o["observable"] == "overlap:1")
    assert row["error"] is None and row["z"] is None and row["limit"] < 1 and row["flags"]


def test_z_text_keeps_the_sign_of_an_infinite_z():
    from ising_moe.cli.chains import _z_text

    assert _z_text(float("-inf")) == "-inf" and _z_text(float("inf")) == "+inf"
    assert _z_text(float("nan")) == "n/a" and _z_text(None) == "n/a" and _z_text(-1.234) == "-1.23"


def test_simulate_flags_the_unmixed_rows_of_issue_20():
    """q = 8, J = 6 with a field: heat-bath cannot move between the ordered states. The old run
    printed occupation:0 = 0.998 ± 0.0008 against 0.891 (z = +127) with no flag. Every row with
    |z| > 5 must now carry a flag (shortened run; the CLI seeds all 8 ordered states)."""
    r = run("simulate", "--model-kind", "potts", "-q", "8", "-n", "32", "--beta", "1", "-J", "6",
            "--field=0.3,0.2121320344,0,-0.2121320344,-0.3,-0.2121320344,0,0.2121320344", "--periodic",
            "--update", "heat-bath", "--n-sweeps", "4000", "--n-burnin", "400", "--max-distance", "2",
            "--seed", "1001", "--json")
    doc = strict_json(r.output)
    assert doc["params"]["n_chains"] == 8
    wrong = [o for o in doc["observables"] if o["z"] is not None and abs(o["z"]) > 5]
    assert wrong and all(o["flags"] for o in wrong)
