"""Calibration of the Monte Carlo error bars and flags over seeds. Prints JSON.

1. ``samplers``: strong-coupling q = 8 chains with a field (the case of issue 20: J = 6, beta = 1,
   h(a) = 0.3 cos(2 pi a / 8), where an ordered chain has eight modes of unequal weight), every
   update, nearest-neighbour (n = 32, periodic and open) and long-range (n = 5, exact by
   enumeration), with the library's 4 chains (fewer than q: the 4 ordered states of lowest energy
   are seeded) and with q = 8 chains (every ordered state seeded, the CLI default); and a weakly
   coupled control (J = 1) where every sampler mixes, for the false-alarm cost. Per sampler:
   the z = (MC - exact) / error distribution (mean, sd, max |z| over results with an error), how
   many results have |z| > 5 and the fraction of those that are flagged (goal: 1.0), the fraction
   of all results flagged (the false-alarm cost), and the results with no variation.
2. ``ar1``: the n/tau flag on short AR(1) series (tau underestimated on short series): fraction
   flagged, and the coverage of the nominal 95% interval and the largest |z| among unflagged results.
3. ``rare_events``: a telegraph process (rare excursions of mean length 5) with a handful to
   hundreds of expected excursions: the same numbers for the few-events flag.

    python benchmarks/calibrate_mc.py [--seeds 10] [--n-sweeps 4000] [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import emit
from scipy.signal import lfilter

from ising_moe import LongRangeChain, PottsChain
from ising_moe.mc import simulate
from ising_moe.mc.observables import exact_observables
from ising_moe.mc.sweep import observable_names
from ising_moe.stats import estimate

Q = 8
FIELD = 0.3 * np.cos(2 * np.pi * np.arange(Q) / Q)
NN_UPDATES = ("metropolis", "metropolis-random", "heat-bath", "swendsen-wang", "wolff")
LR_UPDATES = ("metropolis", "metropolis-random", "heat-bath", "wolff")


def _models():
    return {
        "nn-periodic": PottsChain.potts(32, Q, coupling=6.0, field=FIELD, beta=1.0, periodic=True),
        "nn-open": PottsChain.potts(32, Q, coupling=6.0, field=FIELD, beta=1.0, periodic=False),
        "lr-periodic": LongRangeChain.power_law(5, Q, coupling=6.0, alpha=1.5, max_distance=2, field=FIELD,
                                                beta=1.0, periodic=True),
        # control: weak coupling (xi ~ 1), where every sampler mixes: the flags' false-alarm cost
        "nn-weak-periodic": PottsChain.potts(32, Q, coupling=1.0, field=FIELD, beta=1.0, periodic=True),
    }


def _summary(z: np.ndarray, flagged: np.ndarray, no_variation: np.ndarray) -> dict:
    finite = np.isfinite(z)
    wrong = finite & (np.abs(z) > 5)
    zf = z[finite]
    return {
        "n_results": int(z.size),
        "z_mean": float(zf.mean()) if zf.size else None,
        "z_sd": float(zf.std()) if zf.size else None,
        "max_abs_z": float(np.abs(zf).max()) if zf.size else None,
        "n_abs_z_gt_5": int(wrong.sum()),
        "flagged_of_abs_z_gt_5": float(flagged[wrong].mean()) if wrong.any() else None,
        "unflagged_abs_z_gt_5": int((wrong & ~flagged).sum()),
        "max_abs_z_unflagged": float(np.abs(z[finite & ~flagged]).max()) if (finite & ~flagged).any() else None,
        "fraction_flagged": float(flagged.mean()),
        "n_no_variation": int(no_variation.sum()),
    }


def samplers(seeds, n_sweeps: int, n_burnin: int) -> list[dict]:
    out = []
    for label, model in _models().items():
        max_distance = 2
        exact = exact_observables(model, max_distance)
        names = observable_names(Q, max_distance)
        updates = LR_UPDATES if label.startswith("lr") else NN_UPDATES
        for update in updates:
            for n_chains in (4, Q):
                z, flagged, constant = [], [], []
                t0 = time.perf_counter()
                for seed in seeds:
                    run = simulate(model, update, n_sweeps, n_chains=n_chains, n_burnin=n_burnin, rng=seed,
                                   max_distance=max_distance)
                    for name in names:
                        st = run.stats(name)
                        z.append(st.z_score(exact[name]))
                        flagged.append(bool(st.problems()))
                        constant.append(not st.varied)
                out.append({"model": label, "update": update, "n_chains": n_chains,
                            **_summary(np.array(z), np.array(flagged), np.array(constant)),
                            "seconds": round(time.perf_counter() - t0, 2)})
    return out


def _ar1(phi, n, n_chains, rng):
    eps = rng.normal(size=(n_chains, n))
    eps[:, 0] /= np.sqrt(1 - phi**2)
    return lfilter([1.0], [1.0, -phi], eps, axis=1)


def _coverage(series_fn, truth, n_rep, rng, bounds=None) -> dict:
    z, flagged = [], []
    for _ in range(n_rep):
        st = estimate(series_fn(rng), bounds=bounds)
        z.append(st.z_score(truth))
        flagged.append(bool(st.problems()))
    z, flagged = np.array(z), np.array(flagged)
    ok = np.isfinite(z) & ~flagged
    return {"fraction_flagged": float(flagged.mean()),
            "coverage_unflagged": float((np.abs(z[ok]) < 1.96).mean()) if ok.any() else None,
            "coverage_all": float((np.abs(z[np.isfinite(z)]) < 1.96).mean()),
            "max_abs_z_unflagged": float(np.abs(z[ok]).max()) if ok.any() else None,
            "n_unflagged_abs_z_gt_5": int((np.abs(z[ok]) > 5).sum())}


def ar1(n_rep: int) -> list[dict]:
    rng = np.random.default_rng(20)
    out = []
    for n_chains in (1, 4):
        for phi in (0.0, 0.5, 0.9):
            for n in (100, 300, 1000, 3000):
                out.append({"phi": phi, "n": n, "n_chains": n_chains, "tau": (1 + phi) / (1 - phi),
                            **_coverage(lambda g: _ar1(phi, n, n_chains, g), 0.0, n_rep, rng)})
    return out


def _telegraph(p_on, p_off, n, n_chains, rng):
    """0/1 Markov chain: 0 -> 1 with p_on, 1 -> 0 with p_off, started stationary (built from
    geometric holding times)."""
    x = np.zeros((n_chains, n))
    for c in range(n_chains):
        t, on = 0, rng.random() < p_on / (p_on + p_off)
        while t < n:
            length = int(rng.geometric(p_off if on else p_on))
            if on:
                x[c, t: t + length] = 1.0
            t += length
            on = not on
    return x


def rare_events(n_rep: int) -> list[dict]:
    rng = np.random.default_rng(21)
    out = []
    n, n_chains, p_off = 20000, 4, 0.2
    for expected in (1, 3, 10, 30, 100, 300):
        p_on = expected / (n * n_chains)
        truth = p_on / (p_on + p_off)
        out.append({"expected_excursions": expected, "n": n, "n_chains": n_chains, "mean": truth,
                    **_coverage(lambda g: _telegraph(p_on, p_off, n, n_chains, g), truth, n_rep, rng,
                                bounds=(0.0, 1.0))})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds per sampler and case")
    parser.add_argument("--n-sweeps", type=int, default=4000)
    parser.add_argument("--n-burnin", type=int, default=400)
    parser.add_argument("--n-rep", type=int, default=400, help="series per AR(1) / telegraph cell")
    parser.add_argument("--quick", action="store_true", help="3 seeds, 1000 sweeps, 100 series per cell")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.n_sweeps, args.n_burnin, args.n_rep = 3, 1000, 100, 100
    results = {"params": vars(args), "samplers": samplers(range(args.seeds), args.n_sweeps, args.n_burnin),
               "ar1": ar1(args.n_rep), "rare_events": rare_events(args.n_rep)}
    emit("calibrate_mc", results)


if __name__ == "__main__":
    main()
