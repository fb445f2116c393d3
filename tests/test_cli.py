import json
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from ising_moe import __version__, exact
from ising_moe.chain import PottsChain
from ising_moe.cli import main
from ising_moe.data import ExpertSequences, save_experts


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_version_and_help():
    r = run("--version")
    assert r.exit_code == 0 and __version__ in r.output
    r = run("--help")
    assert r.exit_code == 0 and "exact" in r.output
    r = CliRunner().invoke(main, [])  # a bare group shows its help, not a one-line error
    assert "Commands:" in r.output and "\n" in r.output.strip()


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


# ---------------------------------------------------------------- outputs, locks, strict JSON
_SWEEP = ["sweep", "--beta", "0.5,1.0", "--n-sites", "10", "--n-sweeps", "40", "--n-chains", "2",
          "--max-distance", "2"]


def _strict(text: str):
    """Parse with a strict JSON parser: bare NaN / Infinity raise."""
    def reject(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text[text.index("{"):], parse_constant=reject)


def _experts_file(directory: Path) -> Path:
    model = PottsChain.potts(16, 3, coupling=0.9)
    experts = np.stack([exact.sample(model, 60, rng=s) for s in (1, 2)], axis=1)[..., None]
    data = ExpertSequences(experts, np.ones((60, 16), bool), 3, layers=[0, 2],
                           attrs={"model_id": "test/chain", "weights": "random-init"})
    directory.mkdir(parents=True, exist_ok=True)
    save_experts(data, directory / "chain.h5")
    return directory / "chain.h5"


_FIT = ["--variants", "potts", "--bootstrap", "2", "--max-distance", "4"]


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_exact_json_is_strict_where_values_are_infinite():
    import warnings

    with pytest.raises(ValueError, match="non-standard"):  # negative control: the parser rejects Infinity
        _strict('{"x": Infinity}')
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a degenerate spectrum warns; the point here is the JSON
        r = run("exact", "--ising", "-n", "101", "--beta", "50", "--coupling", "-1", "--periodic", "--json")
    assert r.exit_code == 0
    doc = _strict(r.output)
    assert doc["correlation_length"] is None or np.isfinite(doc["correlation_length"])


def test_every_command_prints_strict_json(tmp_path):
    import matplotlib.pyplot as plt

    plt.close("all")  # figures other tests left open in this worker are not this test's
    data = _experts_file(tmp_path)
    outputs = {
        "exact": run("exact", "-q", "3", "-n", "20", "--json"),
        "simulate": run("simulate", "-n", "12", "--n-sweeps", "50", "--json"),
        "sweep": run(*_SWEEP, "-o", str(tmp_path / "s.h5"), "--json"),
        "measure": run("measure", str(data), "--max-distance", "4", "--block-sizes", "8", "--bootstrap", "10",
                       "--no-probe", "--json"),
        "fit": run("fit", "--model", str(data), *_FIT, "-o", str(tmp_path / "fit"), "--json"),
    }
    for name, r in outputs.items():
        assert r.exit_code == 0, (name, r.output)
        _strict(r.output)
    assert plt.get_fignums() == []  # every figure a command draws is closed
    # the summary file is strict JSON too
    json.loads((tmp_path / "fit" / "summary.json").read_text(), parse_constant=lambda c: 1 / 0)


def _unwritable(tmp_path) -> Path:
    if os.geteuid() == 0:  # root writes anywhere chmod allows: /sys refuses even root
        if not os.path.isdir("/sys") or os.access("/sys", os.W_OK) and os.path.exists("/sys/.probe"):
            pytest.skip("no unwritable directory for root")
        return Path("/sys")
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    return d


@pytest.mark.parametrize("command", ["exact", "simulate", "sweep", "measure", "fit"])
def test_unwritable_output_is_one_line(tmp_path, command):
    ro = _unwritable(tmp_path)
    data = _experts_file(tmp_path / "in")
    args = {"exact": ["exact", "-n", "20", "-o", str(ro / "e.h5")],
            "simulate": ["simulate", "-n", "12", "--n-sweeps", "30", "-o", str(ro / "m.h5")],
            "sweep": [*_SWEEP, "-o", str(ro / "s.h5")],
            "measure": ["measure", str(data), "--no-probe", "-o", str(ro / "x.stats.h5")],
            "fit": ["fit", "--model", str(data), *_FIT, "-o", str(ro / "fitdir")]}[command]
    t0 = time.monotonic()
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    assert r.output.startswith("Error: cannot write") and len(r.output.strip().splitlines()) == 1
    assert "Traceback" not in r.output and time.monotonic() - t0 < 10  # refused before the work


def test_negative_seed_is_one_line():
    for command in (["fit", "--model", "x.h5"], ["sweep"], ["simulate"], ["measure", "x.h5"]):
        r = CliRunner().invoke(main, [*command, "--seed", "-1"])
        assert r.exit_code == 2 and "--seed" in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output


def test_second_writer_exits_at_once_and_stale_locks_are_taken(tmp_path):
    out = tmp_path / "s.h5"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with open(f"/proc/{holder.pid}/stat") as fh:
            started = fh.read().rsplit(")", 1)[1].split()[19]
        (tmp_path / ".s.h5.lock").write_text(f"{holder.pid} {started}")
        t0 = time.monotonic()
        r = CliRunner().invoke(main, [*_SWEEP, "-o", str(out)])
        assert r.exit_code == 2 and "being written by another process" in r.output
        assert len(r.output.strip().splitlines()) == 1 and time.monotonic() - t0 < 5
        assert not out.exists() and not (tmp_path / "s.h5.partial").exists()
    finally:
        holder.kill()
        holder.wait()
    (tmp_path / ".s.h5.lock").write_text(f"{_dead_pid()} 1")  # stale: its process is gone
    assert run(*_SWEEP, "-o", str(out)).exit_code == 0
    assert out.exists() and not (tmp_path / ".s.h5.lock").exists()


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = _dead_pid()
    (tmp_path / f".s.h5.tmp-{dead}").write_bytes(b"half a file")
    (tmp_path / f".other.h5.tmp-{dead}").write_bytes(b"")
    (tmp_path / f".s.h5.stage-{dead}").mkdir()
    (tmp_path / f".s.h5.stage-{dead}" / "s.png").write_bytes(b"")
    alive = tmp_path / f".x.h5.tmp-{os.getpid()}"  # a live process's temporary stays
    alive.write_bytes(b"")
    assert run(*_SWEEP, "-o", str(tmp_path / "s.h5")).exit_code == 0
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([alive.name, "s.h5", "s.pdf", "s.png"])


def test_existing_figures_are_never_overwritten(tmp_path):
    data = _experts_file(tmp_path)
    fig = tmp_path / "chain.stats.rates.png"
    fig.write_text("x")
    r = CliRunner().invoke(main, ["measure", str(data), "--no-probe", "--bootstrap", "10"])
    assert r.exit_code == 2 and "chain.stats.rates.png exists" in r.output
    assert fig.read_text() == "x" and not (tmp_path / "chain.stats.h5").exists()
    (tmp_path / "s.pdf").write_text("x")
    r = CliRunner().invoke(main, [*_SWEEP, "-o", str(tmp_path / "s.h5")])
    assert r.exit_code == 2 and "s.pdf exists" in r.output and not (tmp_path / "s.h5").exists()
    assert run(*_SWEEP, "-o", str(tmp_path / "s.h5"), "--overwrite").exit_code == 0
    assert (tmp_path / "s.pdf").read_bytes().startswith(b"%PDF")


def test_fit_resumes_per_layer_and_refuses_another_command(tmp_path):
    from concurrent.futures import Executor, Future

    from ising_moe.data import load_experts
    from ising_moe.fit.pipeline import fit_expert_data

    class FailSecond(Executor):
        def __init__(self):
            self.n = 0

        def submit(self, fn, /, *args, **kwargs):
            future, self.n = Future(), self.n + 1
            if self.n == 1:
                future.set_result(fn(*args, **kwargs))
            else:
                future.set_exception(RuntimeError("killed"))
            return future

    data_path = _experts_file(tmp_path)
    out = tmp_path / "fit"
    with pytest.raises(RuntimeError, match="killed"):
        fit_expert_data(load_experts(data_path), variants=["potts"], n_bootstrap=2, max_distance=4,
                        executor=FailSecond(), checkpoint=out / "fit.h5")
    assert len(list((out / "fit.h5.partial").glob("chunk-*.pkl"))) == 1
    r = CliRunner().invoke(main, ["fit", "--model", str(data_path), *_FIT, "-o", str(out), "--seed", "1"])
    assert r.exit_code == 2 and "interrupted run with other parameters" in r.output
    r = run("fit", "--model", str(data_path), *_FIT, "-o", str(out))  # the same command resumes
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".") or p.name.endswith("partial")) == []
    r = run("fit", "--model", str(data_path), *_FIT, "--output-dir", str(tmp_path / "ref"))  # deprecated alias
    assert r.exit_code == 0
    with h5py.File(out / "fit.h5") as a, h5py.File(tmp_path / "ref" / "fit.h5") as b:
        names = []
        a.visit(names.append)
        for name in names:
            if isinstance(a[name], h5py.Dataset):
                np.testing.assert_array_equal(a[name][()], b[name][()], err_msg=name)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (tmp_path / "ref").iterdir())


_KILL_FIT = """
import os, signal, sys
from ising_moe import io, outputs
from ising_moe.cli import main
where, args = sys.argv[1], sys.argv[2:]
if where == "layer":  # SIGKILL once the first layer is staged
    original = io.ChunkStore.write_object
    def write_object(self, index, obj):
        original(self, index, obj)
        os.kill(os.getpid(), signal.SIGKILL)
    io.ChunkStore.write_object = write_object
else:  # SIGKILL in the middle of moving the outputs into place
    moved = [0]
    original = os.replace
    def replace(src, dst):
        original(src, dst)
        if ".stage-" in str(src) and ".stage-" not in str(dst):
            moved[0] += 1
            if moved[0] == 3:
                os.kill(os.getpid(), signal.SIGKILL)
    outputs.os.replace = replace
main(args)
"""


def _fit_files(directory: Path) -> dict:
    out = {}
    for p in sorted(directory.iterdir()):
        if p.suffix == ".h5":
            with h5py.File(p) as f:
                f.visititems(lambda n, o: out.__setitem__(f"{p.name}/{n}", o[()]) if isinstance(o, h5py.Dataset)
                             else None)
        else:
            out[p.name] = None
    return out


def test_fit_killed_mid_run_or_mid_commit_ends_complete(tmp_path):
    data = _experts_file(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for where in ("commit", "layer"):
        out = tmp_path / where
        args = ["fit", "--model", str(data), *_FIT, "-o", str(out)]
        proc = subprocess.run([sys.executable, "-c", _KILL_FIT, where, *args], capture_output=True, env=env)
        assert proc.returncode == -9, proc.stderr.decode()[-2000:]
        visible = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
        if where == "layer":
            assert visible == ["fit.h5.partial"]  # nothing of the outputs, the finished layer kept
            assert run(*args).exit_code == 0  # the same command resumes
        else:
            assert "fit.h5" not in visible and len(visible) >= 3  # the data file moves last
            r = CliRunner().invoke(main, args)  # the next run completes the interrupted commit
            assert r.exit_code == 2 and "exists" in r.output
    # the run killed during its commit computed everything at once: the resumed run matches it
    complete, resumed = tmp_path / "commit", tmp_path / "layer"
    assert sorted(p.name for p in complete.iterdir()) == sorted(p.name for p in resumed.iterdir())
    assert "summary.json" in os.listdir(complete) and "fields.png" in os.listdir(complete)
    a, b = _fit_files(complete), _fit_files(resumed)
    assert a.keys() == b.keys()
    for key in a:
        if a[key] is not None:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
