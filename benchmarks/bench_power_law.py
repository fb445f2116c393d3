"""Speed of the O(N) cluster sampler of power-law chains against the O(N R) sweep at R = N - 1. Prints JSON.

Model: the long-range Ising chain ``J(r) = 1 / r^(1 + sigma)``, sigma = 0.5, open, zero field, at
beta = 0.35 (near its transition, see critical_power_law.py). Both samplers run through
``simulate`` on one chain, one thread, with the measurements done once (burn-in sweeps are timed):

- ``swendsen-wang``: Fukui-Todo Poisson bonds over all distances, O(N + Lambda) per sweep;
- ``heat-bath`` on the same model: the long-range kernel over all N - 1 distances, O(N^2) per sweep
  (``metropolis`` the same order).

Reports seconds per sweep, the ratio at each N measured in this run, and the exponent of
``time ~ N^a`` fitted over the O(N) sampler's sizes. At N = 1e5 the O(N R) sweep takes tens of
seconds; it is timed over one sweep (``--quick``: estimated as t(1e4) * 100, flagged).

    python benchmarks/bench_power_law.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np
from _common import emit

from ising_moe import PowerLawChain
from ising_moe.mc import simulate

SIGMA, BETA = 0.5, 0.35


def per_sweep(model, update, n_sweeps: int) -> float:
    """Seconds per sweep over ``n_sweeps`` burn-in sweeps and one measured one (compiled beforehand
    on a small chain)."""
    simulate(model.replace(n_sites=64), update, 1, n_chains=1, n_burnin=1, rng=0)
    t0 = time.perf_counter()
    simulate(model, update, 1, n_chains=1, n_burnin=n_sweeps, rng=1)
    return (time.perf_counter() - t0) / (n_sweeps + 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="skip the one O(N^2) sweep at N = 1e5 (estimate it)")
    args = ap.parse_args()
    numba.set_num_threads(1)
    sizes = [1000, 3000, 10_000, 30_000, 100_000]
    rows = []
    for n in sizes:
        model = PowerLawChain.ising(n, 1.0, SIGMA, beta=BETA)
        fast = per_sweep(model, "swendsen-wang", max(20, 2_000_000 // n))
        row = {"n_sites": n, "swendsen_wang_s_per_sweep": fast}
        if n in (1000, 10_000) or (n == 100_000 and not args.quick):
            slow = per_sweep(model, "heat-bath", {1000: 20, 10_000: 2, 100_000: 0}[n])
            row.update(heat_bath_R_N_minus_1_s_per_sweep=slow, heat_bath_estimated=False, ratio=slow / fast)
        elif n == 100_000:
            ref = next(r for r in rows if r["n_sites"] == 10_000)["heat_bath_R_N_minus_1_s_per_sweep"]
            slow = ref * 100.0
            row.update(heat_bath_R_N_minus_1_s_per_sweep=slow, heat_bath_estimated=True,
                       heat_bath_estimate="t(1e4) * (1e5 / 1e4)^2", ratio=slow / fast)
        rows.append(row)
    n = np.array([r["n_sites"] for r in rows], dtype=float)
    t = np.array([r["swendsen_wang_s_per_sweep"] for r in rows])
    slope, _ = np.polyfit(np.log(n), np.log(t), 1)
    ratio_1e4 = next(r["ratio"] for r in rows if r["n_sites"] == 10_000)
    emit("power_law", {
        "model": {"kind": "ising", "coupling": 1.0, "sigma": SIGMA, "beta": BETA, "periodic": False},
        "threads": 1,
        "sizes": rows,
        "swendsen_wang_exponent": float(slope),
        "ratio_at_1e4": ratio_1e4,
        "goal_ratio_at_1e4": 100.0,
        "goal_met": bool(ratio_1e4 >= 100.0),
    })


if __name__ == "__main__":
    main()
