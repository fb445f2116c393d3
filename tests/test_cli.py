import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from ising_moe import __version__, exact
from ising_moe.chain import PottsChain
from ising_moe.cli import main


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_version_and_help():
    r = run("--version")
    assert r.exit_code == 0 and __version__ in r.output
    r = run("--help")
    assert r.exit_code == 0 and "exact" in r.output


def test_exact_json_matches_library(tmp_path):
    out = tmp_path / "e.h5"
    r = run("exact", "-q", "3", "-n", "40", "--beta", "0.8", "-J", "1.2", "--field", "0.1,0,-0.2",
            "--max-distance", "10", "-o", str(out), "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    model = PottsChain.potts(40, 3, 1.2, [0.1, 0, -0.2], beta=0.8)
    assert doc["log_partition"] == pytest.approx(exact.log_partition(model), rel=1e-12)
    assert doc["correlation_length"] == pytest.approx(exact.correlation_length(model), rel=1e-12)
    with h5py.File(out, "r") as f:
        assert f.attrs["finished"]
        np.testing.assert_allclose(f["correlation"][()], exact.correlation_function(model, 10), rtol=1e-12)


def test_exact_ising_periodic_text():
    r = run("exact", "--ising", "-J", "1", "--field", "0.2", "--periodic", "-n", "64")
    assert r.exit_code == 0
    assert "log Z" in r.output and "correlation length" in r.output


@pytest.mark.parametrize("args,msg", [
    (["exact", "-q", "3", "--field", "1,2"], "expected n_states = 3"),
    (["exact", "-q", "1"], "n_states must be >= 2"),
    (["exact", "--beta", "-1"], "beta must be >= 0"),
    (["exact", "--max-distance", "600"], "--max-distance"),
    (["exact", "--field", "missing.npy"], "no such file"),
])
def test_user_errors_exit_2_without_traceback(args, msg):
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2
    assert msg in r.output
    assert "Traceback" not in r.output


def test_existing_output_refused(tmp_path):
    out = tmp_path / "e.h5"
    assert run("exact", "-o", str(out)).exit_code == 0
    r = CliRunner().invoke(main, ["exact", "-o", str(out)])
    assert r.exit_code == 2 and "--overwrite" in r.output
    assert run("exact", "-o", str(out), "--overwrite").exit_code == 0


def test_console_script_entry_point():
    r = subprocess.run([sys.executable, "-m", "ising_moe.cli", "exact", "-q", "1"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.startswith("Error:") and "Traceback" not in r.stderr
