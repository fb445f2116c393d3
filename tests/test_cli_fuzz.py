"""Fuzz table of bad command lines: every case exits 2 with one line, no traceback, and leaves no
state behind (no output, no ``.partial`` directory, no temporary, lock or staging file).

Each case runs in a fresh directory holding only the inputs it needs; afterwards that directory
must hold exactly those inputs. Sizes are tiny so the table runs in seconds.
"""

import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ising_moe import PottsChain, exact
from ising_moe.cli import main
from ising_moe.data import ExpertSequences, save_experts

SMALL_SWEEP = ["--n-sites", "10", "--n-sweeps", "20", "--n-chains", "2", "--max-distance", "2"]


def _experts(directory: Path, name="data.h5", finished=True) -> None:
    model = PottsChain.potts(12, 3, coupling=0.8)
    experts = np.stack([exact.sample(model, 12, rng=s) for s in (1, 2)], axis=1)[..., None]
    save_experts(ExpertSequences(experts, np.ones((12, 12), bool), 3, layers=[0, 1],
                                 attrs={"model_id": "t", "weights": "random-init"}), directory / name)
    if not finished:
        import h5py

        with h5py.File(directory / name, "a") as f:
            f.attrs["finished"] = False


# inputs a case needs, created in its directory before the run
INPUTS = {
    "data": lambda d: _experts(d),
    "unfinished": lambda d: _experts(d, "data.h5", finished=False),
    "garbage": lambda d: (d / "data.h5").write_bytes(b"\x89HDF\r\n not really"),
    "bad_toml": lambda d: (d / "spec.toml").write_text("beta = [0.5,"),
    "unknown_key": lambda d: (d / "spec.toml").write_text("temperature = 1.0\n"),
    "file_as_dir": lambda d: (d / "out").write_text("a file where a directory is expected"),
    "dir_as_file": lambda d: (d / "out.h5").mkdir(),
    "empty_npy": lambda d: (d / "f.npy").write_bytes(b"not numpy"),
}

CASES = [
    # exact
    ([], ["exact", "-q", "1"], "n_states"),
    ([], ["exact", "--beta", "-1"], "beta"),
    ([], ["exact", "-n", "abc"], "--n-sites"),
    ([], ["exact", "-n", "16", "--max-distance", "16"], "--max-distance"),
    ([], ["exact", "--field", "missing.npy"], "no such file"),
    (["empty_npy"], ["exact", "-q", "2", "--field", "f.npy"], "--field"),
    ([], ["exact", "-q", "3", "--field", "1,2"], "n_states = 3"),
    ([], ["exact", "--bogus"], "--bogus"),
    (["dir_as_file"], ["exact", "-n", "8", "-o", "out.h5"], "directory"),
    # simulate
    ([], ["simulate", "--update", "bogus", "-n", "8"], "update"),
    ([], ["simulate", "--n-sweeps", "0", "-n", "8"], "n_sweeps"),
    ([], ["simulate", "--beta", "x"], "--beta"),
    ([], ["simulate", "--model-kind", "nope"], "--model-kind"),
    ([], ["simulate", "--seed", "-1"], "--seed"),
    ([], ["simulate", "-n", "8", "--max-distance", "8", "-o", "m.h5"], "max_distance"),
    (["dir_as_file"], ["simulate", "-n", "8", "--n-sweeps", "10", "-o", "out.h5"], "directory"),
    # sweep
    ([], ["sweep", "--beta", "a:b:c", *SMALL_SWEEP], "--beta"),
    ([], ["sweep", "--update", "heat-bath,bogus", *SMALL_SWEEP], "update"),
    ([], ["sweep", "--beta", "0.5", "--n-sites", "8", "--max-distance", "9"], "max_distance"),
    ([], ["sweep", "--executor", "threads", *SMALL_SWEEP], "--executor"),
    ([], ["sweep", "--executor", "processes:0", *SMALL_SWEEP], "--executor"),
    ([], ["sweep", "-p", "0", *SMALL_SWEEP], "--processes"),
    ([], ["sweep", "--executor", "serial", "-p", "2", *SMALL_SWEEP], "not both"),
    ([], ["sweep", "--seed", "-1", *SMALL_SWEEP], "--seed"),
    ([], ["sweep", "missing.toml", *SMALL_SWEEP], "missing.toml"),
    (["bad_toml"], ["sweep", "spec.toml", *SMALL_SWEEP], "TOML"),
    (["unknown_key"], ["sweep", "spec.toml", *SMALL_SWEEP], "unknown sweep parameter"),
    (["dir_as_file"], ["sweep", *SMALL_SWEEP, "-o", "out.h5"], "directory"),
    # measure
    ([], ["measure", "missing.h5"], "no such file"),
    (["garbage"], ["measure", "data.h5"], "data.h5"),
    (["unfinished"], ["measure", "data.h5"], "unfinished"),
    (["data"], ["measure", "data.h5", "--layers", "9"], "layer 9"),
    (["data"], ["measure", "data.h5", "--bootstrap", "1", "--no-probe"], "n_bootstrap"),
    (["data"], ["measure", "data.h5", "--block-sizes", "1", "--no-probe"], "block size"),
    (["data"], ["measure", "data.h5", "--layers", "a,b"], "--layers"),
    (["data"], ["measure", "data.h5", "--executor", "bogus"], "--executor"),
    (["data"], ["measure", "data.h5", "--dropped", "x"], "--dropped"),
    (["data"], ["measure", "data.h5", "--seed", "-1"], "--seed"),
    # fit
    ([], ["fit", "--model", "nonsense"], "alias"),
    ([], ["fit", "--model", "missing.h5"], "no such file"),
    (["data"], ["fit", "--model", "data.h5", "--variants", "potts,bogus"], "unknown variant"),
    (["data"], ["fit", "--model", "data.h5", "--bootstrap", "-2"], "n_bootstrap"),
    (["data"], ["fit", "--model", "data.h5", "--max-range", "9"], "max_range"),
    (["data"], ["fit", "--model", "data.h5", "--seed", "-1"], "--seed"),
    (["data"], ["fit", "--model", "data.h5", "--executor", "processes:-1"], "--executor"),
    (["data"], ["fit", "--model", "data.h5", "--variants", "potts", "--test-fraction", "0.9",
                "--bootstrap", "0"], "too few"),
    (["data", "file_as_dir"], ["fit", "--model", "data.h5", "-o", "out"], "out"),
    (["data"], ["fit", "--model", "data.h5", "-o", "a", "--output-dir", "b"], "-o/--output"),
    # extract: only what fails before the model is loaded
    ([], ["extract", "--seed", "-1"], "--seed"),
    ([], ["extract", "--dtype", "fp8"], "--dtype"),
]


def _ids(case):
    return " ".join(case[1])[:60]


@pytest.mark.parametrize("inputs,args,message", CASES, ids=[_ids(c) for c in CASES])
def test_bad_command_line(tmp_path, monkeypatch, inputs, args, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ISINGMOE_DATA", str(tmp_path / "no-data"))
    for name in inputs:
        INPUTS[name](tmp_path)
    before = sorted(os.listdir(tmp_path))
    result = CliRunner().invoke(main, args)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    assert message in lines[0], lines[0]
    assert "Traceback" not in result.output and not isinstance(result.exception, AssertionError)
    after = sorted(os.listdir(tmp_path))
    assert after == before, f"left behind: {sorted(set(after) - set(before))}"
