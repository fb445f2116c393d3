"""Exact solver speed: log Z and all marginals of an open chain with position-dependent fields.

Baseline: a plain NumPy loop of the same rescaled forward (and backward) recursion, one
vector-matrix product per site, in the same run. Prints JSON; ratios are baseline / ising-moe.

    python benchmarks/bench_exact.py [--n-sites 100000] [--states 2,8,64]
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import best_time, emit

from ising_moe import PottsChain, exact


def numpy_log_partition(log_fields, coupling):
    """Reference: rescaled forward recursion with NumPy, one ``@`` per site."""
    w = np.exp(coupling - coupling.max())
    shift = coupling.max()
    a = np.exp(log_fields[0] - log_fields[0].max())
    log_z = log_fields[0].max() + np.log(a.sum())
    a /= a.sum()
    for f in log_fields[1:]:
        m = f.max()
        a = (a @ w) * np.exp(f - m)
        s = a.sum()
        a /= s
        log_z += shift + m + np.log(s)
    return log_z


def numpy_marginals(log_fields, coupling):
    w = np.exp(coupling - coupling.max())
    n, q = log_fields.shape
    fexp = np.exp(log_fields - log_fields.max(axis=1, keepdims=True))
    alphas = np.empty((n, q))
    a = fexp[0] / fexp[0].sum()
    alphas[0] = a
    for i in range(1, n):
        a = (a @ w) * fexp[i]
        a /= a.sum()
        alphas[i] = a
    b = np.full(q, 1.0 / q)
    out = np.empty((n, q))
    out[-1] = alphas[-1] * b
    for i in range(n - 2, -1, -1):
        b = w @ (fexp[i + 1] * b)
        b /= b.sum()
        out[i] = alphas[i] * b
    return out / out.sum(axis=1, keepdims=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-sites", type=int, default=100_000)
    parser.add_argument("--states", default="2,8,64")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    results = []
    for q in (int(s) for s in args.states.split(",")):
        fields = rng.normal(size=(args.n_sites, q))
        model = PottsChain.potts(args.n_sites, q, coupling=1.0, field=fields)
        exact.solve(PottsChain.potts(8, q, field=fields[:8])).marginals  # JIT warm-up
        t_logz = best_time(lambda: exact.solve(model).log_partition, args.repeat)
        t_marg = best_time(lambda: exact.solve(model).marginals, args.repeat)
        coupling = np.eye(q)
        t_np_logz = best_time(lambda: numpy_log_partition(fields, coupling), args.repeat)
        t_np_marg = best_time(lambda: numpy_marginals(fields, coupling), args.repeat)
        # same answer as the baseline
        assert np.isclose(exact.log_partition(model), numpy_log_partition(fields, coupling), rtol=1e-12)
        assert np.allclose(exact.marginals(model), numpy_marginals(fields, coupling), rtol=1e-10)
        results.append({
            "n_states": q, "n_sites": args.n_sites,
            "log_partition_s": t_logz, "marginals_s": t_marg,
            "numpy_log_partition_s": t_np_logz, "numpy_marginals_s": t_np_marg,
            "speedup_log_partition": t_np_logz / t_logz, "speedup_marginals": t_np_marg / t_marg,
        })
    emit("exact", results)


if __name__ == "__main__":
    main()
