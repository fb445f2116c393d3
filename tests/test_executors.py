"""Executors: the same bits from serial, local processes and a real Dask cluster; workers die with
their parent; an unreachable scheduler is one line; a sweep interrupted under one executor resumes
under another."""

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from concurrent.futures import Executor, Future

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from ising_moe import PottsChain, exact
from ising_moe.cli import main
from ising_moe.data import ExpertSequences
from ising_moe.errors import InvalidParameterError
from ising_moe.executors import (
    SerialExecutor,
    parse_executor,
    process_executor,
    run_tasks,
)
from ising_moe.mc.sweep import run_sweep

SPEC = {"beta": [0.3, 0.7, 1.1], "update": ["heat-bath", "metropolis"], "n_sites": 12, "n_sweeps": 150,
        "n_burnin": 10, "n_chains": 2, "max_distance": 2, "n_states": 3}


def _h5_arrays(path) -> dict:
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()]
        f.visititems(visit)
    return out


def _assert_same_file(a, b):
    x, y = _h5_arrays(a), _h5_arrays(b)
    assert x.keys() == y.keys()
    for key in x:
        np.testing.assert_array_equal(x[key], y[key], err_msg=key)  # bit-identical, NaN == NaN


def _chain_data():
    rng = np.random.default_rng(5)
    model = PottsChain.potts(20, 3, coupling=0.9, field=0.3 * rng.normal(size=(20, 3)))
    experts = np.stack([exact.sample(model, 80, rng=s) for s in (1, 2)], axis=1)[..., None]
    return ExpertSequences(experts, np.ones((80, 20), bool), 3, layers=[0, 2],
                           attrs={"model_id": "test/chain", "weights": "random-init"})


def _fit(executor, layers=None):
    from ising_moe.fit.pipeline import fit_expert_data

    report = fit_expert_data(_chain_data(), layers=layers, variants=["potts"], n_bootstrap=3, mc_sweeps=50,
                             max_distance=4, seed=11, executor=executor)
    return [(lc.layer, lc.fits["potts"].theta, lc.bootstrap_xi, lc.heldout["potts"], lc.mc_correlation)
            for lc in report.layers]


def _measure(executor):
    from ising_moe.measure import measure

    res = measure(_chain_data(), max_distance=4, block_sizes=(8,), n_bootstrap=20, n_null=1, probe=False,
                  seed=4, executor=executor)
    return [(s.layer, s.correlation.values, s.correlation.errors, s.xi.xi)
            for s in res.layers]


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


@pytest.fixture(scope="module")
def dask_executor():
    distributed = pytest.importorskip("distributed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                           dashboard_address=None)
        client = distributed.Client(cluster)
    try:
        yield client.get_executor()
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            client.close()
            cluster.close()


@pytest.mark.parametrize("spec,parsed", [
    ("serial", ("serial", None)), ("processes", ("processes", None)), ("processes:3", ("processes", 3)),
    ("dask", ("dask", None)), ("dask:tcp://10.0.0.1:8786", ("dask", "tcp://10.0.0.1:8786")),
])
def test_parse_executor(spec, parsed):
    assert parse_executor(spec) == parsed


@pytest.mark.parametrize("spec", ["threads", "processes:0", "processes:x", "serial:2", ""])
def test_parse_executor_rejects(spec):
    with pytest.raises(InvalidParameterError, match="--executor"):
        parse_executor(spec)


def test_run_tasks_yields_every_index_once():
    got = dict(run_tasks(SerialExecutor(), pow, [(2, k) for k in range(5)]))
    assert got == {k: 2 ** k for k in range(5)}


def test_sweep_bit_identical_serial_processes_dask(tmp_path, dask_executor):
    serial = run_sweep(SPEC, tmp_path / "serial.h5", seed=7, progress=False)
    with process_executor(2) as pool:
        procs = run_sweep(SPEC, tmp_path / "procs.h5", seed=7, progress=False, executor=pool)
    dask = run_sweep(SPEC, tmp_path / "dask.h5", seed=7, progress=False, executor=dask_executor)
    _assert_same_file(serial, procs)
    _assert_same_file(serial, dask)
    other = run_sweep(SPEC, tmp_path / "other.h5", seed=8, progress=False)  # control: the seed matters
    with pytest.raises(AssertionError):
        _assert_same_file(serial, other)


def test_fit_and_measure_bit_identical_across_executors(dask_executor):
    """Layers as tasks (two layers) and bootstrap refits as tasks (one layer)."""
    fit_serial, fit_one, meas_serial = _fit(None), _fit(None, layers=[2]), _measure(None)
    assert len(fit_serial[0][2]) == 3 and np.isfinite(fit_serial[0][2]).all()  # the refits ran
    with process_executor(2) as pool:
        _same(fit_serial, _fit(pool))
        _same(meas_serial, _measure(pool))
    _same(fit_serial, _fit(dask_executor))
    _same(fit_one, _fit(dask_executor, layers=[2]))
    _same(meas_serial, _measure(dask_executor))


class _FailingAfter(Executor):
    """Runs ``n`` tasks, then every further task fails (a client killed mid-sweep)."""

    def __init__(self, n):
        self.n = n

    def submit(self, fn, /, *args, **kwargs):
        future = Future()
        if self.n > 0:
            self.n -= 1
            future.set_result(fn(*args, **kwargs))
        else:
            future.set_exception(RuntimeError("client gone"))
        return future


def test_sweep_interrupted_under_one_executor_resumes_under_another(tmp_path, dask_executor):
    out = tmp_path / "s.h5"
    with pytest.raises(RuntimeError, match="client gone"):
        run_sweep(SPEC, out, seed=7, progress=False, executor=_FailingAfter(2))
    partial = tmp_path / "s.h5.partial"
    assert len(list(partial.glob("chunk-*.npz"))) == 2 and not out.exists()
    assert not list(tmp_path.glob(".*lock")) and not list(tmp_path.glob(".*stage-*"))
    run_sweep(SPEC, out, seed=7, progress=False, executor=dask_executor)
    assert not partial.exists()
    _assert_same_file(out, run_sweep(SPEC, tmp_path / "ref.h5", seed=7, progress=False))


_ORPHAN = textwrap.dedent("""
    import multiprocessing, os, sys, time
    from concurrent.futures import ProcessPoolExecutor
    from ising_moe.executors import process_executor
    if sys.argv[1] == "watched":
        pool = process_executor(2)
    else:  # negative control: a plain pool, as the sweep used before
        pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    pids = set()
    while len(pids) < 2:  # both workers have started (their initialisers ran) and answer
        pids |= {f.result() for f in [pool.submit(os.getpid) for _ in range(8)]}
    futures = [pool.submit(time.sleep, 60) for _ in range(2)]
    print(" ".join(map(str, sorted(pids))), flush=True)
    time.sleep(60)
""")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("kind", ["watched", "plain"])
def test_workers_die_with_a_killed_parent(kind):
    parent = subprocess.Popen([sys.executable, "-c", _ORPHAN, kind], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    workers = []
    try:
        workers = [int(p) for p in parent.stdout.readline().split()]
        assert len(workers) == 2 and all(_alive(p) for p in workers)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + (10 if kind == "watched" else 2)  # they poll every 0.2 s
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        if kind == "watched":
            assert not any(_alive(p) for p in workers), "workers outlived their parent"
        else:  # the control shows the test can fail: a plain pool's workers outlive their parent
            assert all(_alive(p) for p in workers)
    finally:
        parent.kill()
        parent.stdout.close()
        for pid in workers:  # the control's orphans (started by this test)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_unreachable_dask_scheduler_is_one_line(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.chdir(tmp_path)
    t0 = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = CliRunner().invoke(main, ["sweep", "--beta", "0.5", "--n-sites", "16", "--n-sweeps", "20",
                                      "--executor", "dask:tcp://127.0.0.1:9", "-o", "s.h5"])
    assert r.exit_code == 2, r.output
    assert r.output.startswith("Error:") and "no Dask scheduler" in r.output
    assert len(r.output.strip().splitlines()) == 1 and time.monotonic() - t0 < 30
    assert list(tmp_path.iterdir()) == []


def test_cli_executor_option_gives_the_same_file(tmp_path):
    args = ["sweep", "--beta", "0.5,1.0", "--n-sites", "10", "--n-sweeps", "60", "--n-chains", "2",
            "--max-distance", "2", "--seed", "3"]
    for name, extra in (("a", []), ("b", ["--executor", "processes:2"])):
        r = CliRunner().invoke(main, [*args, *extra, "-o", str(tmp_path / f"{name}.h5")])
        assert r.exit_code == 0, r.output
    _assert_same_file(tmp_path / "a.h5", tmp_path / "b.h5")
    r = CliRunner().invoke(main, [*args, "--executor", "serial", "-p", "2", "-o", str(tmp_path / "d.h5")])
    assert r.exit_code == 2 and "not both" in r.output
