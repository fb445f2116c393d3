"""Executors: a 64-point sweep run serially and on a local Dask cluster of 2 single-threaded worker
processes, in the same run (wall times, their ratio, and whether the two files are bit-identical).
The cluster's start-up is timed apart. Prints JSON.

    python benchmarks/bench_executors.py [--workers 2] [--n-sweeps 2000] [--n-sites 64]

Needs the ``dask`` extra (``pip install 'ising-moe[dask]'``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
from _common import emit

from ising_moe.mc.sweep import expand_grid, run_sweep


def _datasets(path) -> dict:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def _identical(a, b) -> bool:
    x, y = _datasets(a), _datasets(b)
    return x.keys() == y.keys() and all(np.array_equal(x[k], y[k], equal_nan=x[k].dtype.kind == "f") for k in x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--n-sweeps", type=int, default=2000)
    parser.add_argument("--n-sites", type=int, default=64)
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    spec = {"beta": np.linspace(0.2, 1.6, 16).tolist(), "update": ["heat-bath", "metropolis", "swendsen-wang", "wolff"],
            "n_states": 3, "n_sites": args.n_sites, "n_sweeps": args.n_sweeps, "n_burnin": 100, "n_chains": 2,
            "max_distance": 4}
    n_points = len(expand_grid(spec))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run_sweep({**spec, "beta": 0.5, "update": spec["update"]}, tmp / "warm.h5", progress=False)  # JIT compile
        t0 = time.perf_counter()
        run_sweep(spec, tmp / "serial.h5", seed=1, progress=False)
        serial = time.perf_counter() - t0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            client = Client(cluster)
            startup = time.perf_counter() - t0
            try:
                executor = client.get_executor()
                run_sweep({**spec, "beta": 0.5}, tmp / "warm-dask.h5", progress=False, executor=executor)
                t0 = time.perf_counter()
                run_sweep(spec, tmp / "dask.h5", seed=1, progress=False, executor=executor)
                dask = time.perf_counter() - t0
            finally:
                client.close()
                cluster.close()
        same = _identical(tmp / "serial.h5", tmp / "dask.h5")
    emit("executors", {
        "n_points": n_points, "n_sites": args.n_sites, "n_sweeps": args.n_sweeps, "dask_workers": args.workers,
        "serial_s": round(serial, 3), "dask_s": round(dask, 3), "speedup_dask_vs_serial": round(serial / dask, 3),
        "dask_cluster_startup_s": round(startup, 3), "bit_identical": same,
        "note": "serial runs in the benchmark's own process (Numba may use every core); each Dask worker "
                "runs one task with one Numba thread",
    })


if __name__ == "__main__":
    main()
