"""Monte Carlo speed. Prints JSON.

1. ns per attempted single-spin update (Metropolis, heat-bath), q in {2, 8, 64}, n_sites 4096, one
   thread: ising-moe's kernel (alone, and through ``simulate`` with its per-sweep measurements:
   the library default, and the overlaps up to distance 8 that ``isingmoe simulate`` measures)
   against a vectorised NumPy checkerboard implementation of the same update and a plain C -O3
   loop (benchmarks/c/single_spin.c, same tables and RNG), all in this run.
2. Effective samples per second (tau-corrected) of local (heat-bath, Metropolis) and cluster
   (Swendsen-Wang, Wolff) updates of a 1D Ising chain as the correlation length grows; the
   crossover is the smallest xi where a cluster update wins.
3. Scaling with n_chains on the available cores.

    python benchmarks/bench_mc.py [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
from _common import best_time, emit

from ising_moe import PottsChain
from ising_moe.mc import _kernels as K
from ising_moe.mc import simulate
from ising_moe.mc.sweep import DEFAULTS

HERE = Path(__file__).parent


@numba.njit(cache=True)
def _kernel_loop(kind, spins, st, wf, wj, n_sweeps, buf):
    for _ in range(n_sweeps):
        if kind == 0:
            K.metropolis_sweep(spins, st, wf, wj, False, False)
        else:
            K.heat_bath_sweep(spins, st, wf, wj, False, buf)


def _tables(q, n, rng):
    wf = np.exp(0.1 * (rng.random((n, q)) - 0.5))
    wj = np.where(np.eye(q, dtype=bool), 1.0, np.exp(-1.0))[None]
    return wf, wj


def numpy_checkerboard(kind, spins, wf, wj, n_sweeps, rng):
    """Vectorised reference: update all even, then all odd sites (open chain), table lookups."""
    n = spins.size
    q = wf.shape[1]
    w = wj[0]
    idx = np.arange(n)
    for _ in range(n_sweeps):
        for parity in (0, 1):
            i = idx[parity::2]
            left = np.where(i > 0, spins[np.maximum(i - 1, 0)], -1)
            right = np.where(i < n - 1, spins[np.minimum(i + 1, n - 1)], -1)
            if kind == "metropolis":
                old = spins[i]
                new = (old + 1 + rng.integers(0, q - 1, size=i.size)) % q
                num = wf[i, new] * np.where(left >= 0, w[np.maximum(left, 0), new], 1.0) \
                    * np.where(right >= 0, w[new, np.maximum(right, 0)], 1.0)
                den = wf[i, old] * np.where(left >= 0, w[np.maximum(left, 0), old], 1.0) \
                    * np.where(right >= 0, w[old, np.maximum(right, 0)], 1.0)
                accept = rng.random(i.size) * den < num
                spins[i[accept]] = new[accept]
            else:
                weights = wf[i] * np.where((left >= 0)[:, None], w[np.maximum(left, 0)], 1.0) \
                    * np.where((right >= 0)[:, None], w[:, np.maximum(right, 0)].T, 1.0)
                cum = np.cumsum(weights, axis=1)
                u = rng.random(i.size) * cum[:, -1]
                spins[i] = np.minimum((cum <= u[:, None]).sum(axis=1), q - 1)


def c_baseline(kind, q, n, n_sweeps):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "single_spin"
        subprocess.run([cc, "-O3", "-march=native", str(HERE / "c" / "single_spin.c"), "-o", str(exe), "-lm"],
                       check=True)
        best = min(float(subprocess.run([str(exe), kind, str(q), str(n), str(n_sweeps)], check=True,
                                        capture_output=True, text=True).stdout.split()[0]) for _ in range(3))
    return best


def single_spin(quick):
    numba.set_num_threads(1)
    n = 4096
    rng = np.random.default_rng(0)
    rows = []
    for kind, code in (("metropolis", 0), ("heat-bath", 1)):
        for q in (2, 8, 64):
            sweeps = max(20, int((2e6 if quick else 2e7) / (n * (q if kind == "heat-bath" else 1) ** 0.5)))
            wf, wj = _tables(q, n, rng)
            spins = rng.integers(0, q, n).astype(np.int32)
            st = rng.integers(1, 2**63, size=4, dtype=np.uint64)
            buf = np.empty(q)
            _kernel_loop(code, spins, st, wf, wj, 1, buf)
            t_kernel = best_time(lambda: _kernel_loop(code, spins, st, wf, wj, sweeps, buf)) / (sweeps * n)
            model = PottsChain.potts(n, q, coupling=1.0, field=np.log(wf))
            simulate(model, kind, 2, n_chains=1, n_burnin=0, rng=0)
            t_sim = best_time(lambda: simulate(model, kind, sweeps, n_chains=1, n_burnin=0, rng=0), 5) / (sweeps * n)
            # the measurements `isingmoe simulate` makes by default (overlaps up to its default
            # max_distance; per-site counts only when it writes a file)
            cli_r = DEFAULTS["max_distance"]
            simulate(model, kind, 2, n_chains=1, n_burnin=0, rng=0, max_distance=cli_r, count_sites=False)
            t_cli = best_time(lambda: simulate(model, kind, sweeps, n_chains=1, n_burnin=0, rng=0,
                                               max_distance=cli_r, count_sites=False), 5) / (sweeps * n)
            np_sweeps = max(2, sweeps // 50)
            t_np = best_time(lambda: numpy_checkerboard(kind, spins.copy(), wf, wj, np_sweeps, rng)) / (np_sweeps * n)
            t_c = c_baseline(kind, q, n, sweeps)
            rows.append({
                "update": kind, "n_states": q, "n_sites": n,
                "ns_per_update_kernel": t_kernel * 1e9, "ns_per_update_simulate": t_sim * 1e9,
                "ns_per_update_simulate_cli_measurements": t_cli * 1e9,
                "ns_per_update_numpy_checkerboard": t_np * 1e9,
                "ns_per_update_c_O3": t_c,
                "speedup_vs_numpy": t_np / t_kernel,
                "ratio_to_c": None if t_c is None else t_kernel * 1e9 / t_c,
                "simulate_ratio_to_c": None if t_c is None else t_sim * 1e9 / t_c,
                "simulate_cli_measurements_ratio_to_c": None if t_c is None else t_cli * 1e9 / t_c,
            })
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    return rows


def cluster_vs_local(quick):
    """ESS per second of m^2 (the slow mode) for an Ising chain of 1000 sites at growing xi."""
    n = 1000
    rows = []
    for xi in ((0.5, 5, 50) if quick else (0.5, 1, 2, 5, 10, 20, 50, 100)):
        j = np.log((np.exp(1 / xi) + 1) / (np.exp(1 / xi) - 1))  # Potts-form J with xi = 1/ln coth(J/2)
        model = PottsChain.potts(n, 2, coupling=j, periodic=True)
        row = {"xi": xi, "coupling": j}
        for update in ("heat-bath", "metropolis", "swendsen-wang", "wolff"):
            sweeps = 2000 if quick else 10000
            simulate(model, update, 10, n_chains=2, n_burnin=5, rng=0)
            t0 = time.perf_counter()
            run = simulate(model, update, sweeps, n_chains=2, n_burnin=500, rng=1)
            dt = time.perf_counter() - t0
            m2 = run.series("magnetisation") ** 2
            from ising_moe.stats import integrated_time

            tau = integrated_time(m2)
            row[update] = {"tau_m2_sweeps": tau, "ess_per_s": m2.size / tau / dt, "seconds": dt}
        local = max(row["heat-bath"]["ess_per_s"], row["metropolis"]["ess_per_s"])
        cluster = max(row["swendsen-wang"]["ess_per_s"], row["wolff"]["ess_per_s"])
        row["cluster_over_local"] = cluster / local
        rows.append(row)
    crossover = next((r["xi"] for r in rows if r["cluster_over_local"] > 1), None)
    return {"points": rows, "crossover_xi": crossover}


def chain_scaling(quick):
    model = PottsChain.potts(4096, 8, coupling=1.0)
    rows = []
    sweeps = 100 if quick else 400
    simulate(model, "heat-bath", 2, n_chains=2, n_burnin=0, rng=0)
    for n_chains in (1, 2, 4, 8):
        t = best_time(lambda: simulate(model, "heat-bath", sweeps, n_chains=n_chains, n_burnin=0, rng=0), 2)
        rows.append({"n_chains": n_chains, "threads": numba.get_num_threads(),
                     "chain_sweeps_per_s": n_chains * sweeps / t})
    base = rows[0]["chain_sweeps_per_s"]
    for r in rows:
        r["throughput_vs_1_chain"] = r["chain_sweeps_per_s"] / base
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="Shorter runs (smoke test).")
    parser.add_argument("--single-spin-only", action="store_true", help="Only part 1.")
    args = parser.parse_args()
    if args.single_spin_only:
        emit("mc", {"single_spin": single_spin(args.quick)})
        return
    emit("mc", {"single_spin": single_spin(args.quick), "cluster_vs_local": cluster_vs_local(args.quick),
                "chain_scaling": chain_scaling(args.quick)})


if __name__ == "__main__":
    main()
