import json
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from ising_moe.cli import main
from ising_moe.errors import InvalidParameterError
from ising_moe.mc.sweep import expand_grid, read_sweep, run_sweep

SPEC = {"beta": [0.4, 0.8, 1.2], "update": ["heat-bath", "wolff"], "n_sites": 24, "n_sweeps": 300,
        "n_burnin": 20, "max_distance": 3, "n_states": 3}


def test_grid_expansion():
    pts = expand_grid({"beta": [1, 2], "update": ["a", "b", "c"], "field": [0.1, 0.2]})
    assert len(pts) == 6 and pts[0]["field"] == [0.1, 0.2]
    assert len(expand_grid({"field": [[0.0, 0.1], [0.1, 0.0]]})) == 2
    with pytest.raises(InvalidParameterError, match="unknown sweep parameter"):
        expand_grid({"temperature": 1})


def test_sweep_matches_exact_and_is_process_independent(tmp_path):
    a = run_sweep(SPEC, tmp_path / "a.h5", seed=3, progress=False)
    b = run_sweep(SPEC, tmp_path / "b.h5", seed=3, processes=2, progress=False)
    pa, pb = read_sweep(a), read_sweep(b)
    assert len(pa) == 6
    for x, y in zip(pa, pb):
        assert x["params"] == y["params"]
        assert x["mean"] == y["mean"]
        for name, mean in x["mean"].items():
            assert abs(mean - x["exact"][name]) <= 5 * x["error"][name]


_KILL = textwrap.dedent("""
    import os, signal, sys, json
    from ising_moe import io
    from ising_moe.mc.sweep import run_sweep
    count = [0]
    original = io.ChunkStore.write
    def write(self, index, arrays):
        original(self, index, arrays)
        count[0] += 1
        if count[0] == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    io.ChunkStore.write = write
    run_sweep(json.loads(sys.argv[1]), sys.argv[2], seed=3, progress=False)
""")


def test_sweep_resumes_after_sigkill_bit_identical(tmp_path):
    ref = run_sweep(SPEC, tmp_path / "ref.h5", seed=3, progress=False)
    out = tmp_path / "out.h5"
    proc = subprocess.run([sys.executable, "-c", _KILL, json.dumps(SPEC), str(out)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    # the same command through the CLI finishes the sweep
    r = CliRunner().invoke(main, ["sweep", "--beta", "0.4,0.8,1.2", "--update", "heat-bath,wolff", "-n", "24",
                                  "--n-sweeps", "300", "--n-burnin", "20", "--max-distance", "3", "-q", "3",
                                  "--seed", "3", "-o", str(out)])
    assert r.exit_code == 0, r.output
    with h5py.File(ref, "r") as f, h5py.File(out, "r") as g:
        for name in f:
            if isinstance(f[name], h5py.Group):
                for key in f[name]:
                    np.testing.assert_array_equal(f[name][key][()], g[name][key][()])
                assert f[name].attrs["params"] == g[name].attrs["params"]
    assert (tmp_path / "out.png").exists() and (tmp_path / "out.pdf").exists()


def test_sweep_spec_file_and_errors(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text('beta = [0.5, 1.0]\nn_sites = 16\nn_sweeps = 100\nupdate = "metropolis"\n')
    r = CliRunner().invoke(main, ["sweep", str(spec), "-o", str(tmp_path / "s.h5"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["n_points"] == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("beta = [0.5,\n")
    r = CliRunner().invoke(main, ["sweep", str(bad), "-o", str(tmp_path / "b.h5")])
    assert r.exit_code == 2 and "not valid TOML" in r.output
    r = CliRunner().invoke(main, ["sweep", "--update", "gibbs", "-o", str(tmp_path / "c.h5")])
    assert r.exit_code == 2 and "unknown update" in r.output
    r = CliRunner().invoke(main, ["sweep", "--beta", "x:y", "-o", str(tmp_path / "d.h5")])
    assert r.exit_code == 2 and "--beta" in r.output


def test_simulate_cli(tmp_path):
    r = CliRunner().invoke(main, ["simulate", "--model-kind", "ising", "-J", "0.5", "--field", "0.1", "-n", "32",
                                  "--n-sweeps", "400", "--max-distance", "2", "-o", str(tmp_path / "m.h5"),
                                  "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    zs = [row["z"] for row in doc["observables"] if row["z"] is not None]
    assert len(zs) >= 5 and max(abs(z) for z in zs) <= 5
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert f.attrs["finished"] and f["energy"].shape == (4, 400)
    r = CliRunner().invoke(main, ["simulate", "--update", "wolff", "-J", "-1"])
    assert r.exit_code == 2 and "Potts-form" in r.output
