"""Coverage of the 95% intervals of the Potts coupling ``J`` fitted with free position fields, over
seeds, without and with the half-sample jackknife bias correction (the default of
:class:`~ising_moe.fit.ChainMaxLikelihood`), errors from the Fisher information. Prints JSON.

    python benchmarks/bench_fit_coverage.py [--quick]

Every seed draws random true fields ``0.5 N(0, 1)`` per site and state and exact samples; both
estimators are fitted to the same samples (paired).
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from _common import emit

from ising_moe import PottsChain, exact
from ising_moe.fit import ChainMaxLikelihood


def coupling_coverage(n_sites: int, n_states: int, coupling: float, n_seq: int, n_seeds: int) -> dict:
    z = {"none": [], "jackknife": []}
    for seed in range(n_seeds):
        rng = np.random.default_rng(100 + seed)
        model = PottsChain.potts(n_sites, n_states, coupling=coupling, field=0.5 * rng.normal(size=(n_sites, n_states)))
        x = exact.sample(model, n_seq, rng=seed)
        for mode in z:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = ChainMaxLikelihood(couplings="potts", bias_correction=mode).fit(x)
            z[mode].append((fit.potts_coupling_ - coupling) / fit.result_.errors.theta[-1])
    out = {"n_sites": n_sites, "n_states": n_states, "coupling": coupling, "n_sequences": n_seq, "seeds": n_seeds}
    for mode, v in z.items():
        v = np.array(v)
        out[mode] = {"mean_z": float(v.mean()), "sd_z": float(v.std(ddof=1)),
                     "coverage_95": float(np.mean(np.abs(v) < 1.959964)),
                     "coverage_95_error": float(np.sqrt(0.95 * 0.05 / len(v)))}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n_seeds = 10 if args.quick else 40
    cases = [(64, 4, 1.0, 50), (256, 4, 2.0, 100), (128, 8, 2.0, 200)]
    emit("fit_coverage", {"coupling_coverage": [coupling_coverage(*c, n_seeds) for c in cases]})


if __name__ == "__main__":
    main()
