"""Calibration of the "above noise" window and of xi on small and large samples (prints JSON).

Tables (``--quick`` for a short run):

* ``null``: independent sites with position-dependent rates (no correlation at all), ragged
  lengths 50-300, N = 2, 4, 8, 16, 64 sequences, q = 8 and 64: the fraction of data sets with a
  window above noise, and with a xi (goal: <= 5%, the nominal family-wise level);
* ``potts``: exact samples of a Potts chain with known xi and few sequences: fraction with a xi,
  coverage of the nominal 95% interval ``xi ± 1.96 error`` (goal 0.90-0.98);
* ``exponential_30``: an exactly exponential C(r) with xi = 30 (symmetric q = 4 Potts chain, zero
  field), N = 500 and 2000: fraction called "not exponential" (goal ~ the 1% level), median xi,
  coverage;
* ``two_exponentials``: a chain whose C(r) has two decays: what is reported against the
  transfer-matrix xi;
* ``within_sequence_null``: pure Markov chains with xi = 30, L = 128: how often the summary calls
  the correlation "sequence composition" (goal: never).

The baseline is the same estimator at the same seeds: run this script with ``PYTHONPATH`` pointing
at an older checkout to get its numbers (fields it lacks are reported as null).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from _common import emit
from ising_moe import PottsChain, exact
from ising_moe import measure as M


def _binom(k, n):
    p = k / n if n else math.nan
    return {"rate": p, "k": int(k), "n": int(n), "se": math.sqrt(p * (1 - p) / n) if n else None}


def null_table(seeds: int):
    out = []
    for q in (8, 64):
        for n_seq in (2, 4, 8, 16, 64):
            windows = xis = 0
            for seed in range(seeds):
                rng = np.random.default_rng([seed, q, n_seq])
                lengths = rng.integers(50, 301, size=n_seq)
                n = int(lengths.max())
                h = 1.5 * np.sin(np.arange(n)[:, None] / rng.uniform(5, 40) + rng.uniform(0, 6, size=q)) \
                    + rng.normal(0, 1, size=q)
                p = np.exp(h)
                p /= p.sum(axis=1, keepdims=True)
                x = (p.cumsum(axis=1)[None] < rng.random((n_seq, n, 1))).sum(axis=2)
                x = np.minimum(x, q - 1)
                mask = np.arange(n)[None, :] < lengths[:, None]
                c = M.correlation_function(x, mask, q, min(64, n - 1), n_null=0)
                extra = {"n_effective": c.n_effective} if hasattr(c, "n_effective") else {}  # older versions
                xi = M.fit_correlation_length(c.distances, c.values, c.errors, influence=c.influence,
                                              n_bootstrap=100, rng=seed, **extra)
                windows += xi.window[1] >= xi.window[0]
                xis += bool(xi.success)
            out.append({"q": q, "n_sequences": n_seq, "window_reported": _binom(windows, seeds),
                        "xi_reported": _binom(xis, seeds)})
    return out


def _xi_run(model, n_seq, seed, max_distance, n_bootstrap=200):
    x = exact.sample(model, n_seq, rng=seed)
    c = M.correlation_function(x, None, model.n_states, max_distance, n_null=0)
    return M.fit_correlation_length(c.distances, c.values, c.errors, influence=c.influence,
                                    n_bootstrap=n_bootstrap, rng=seed)


def _coverage(model, sizes, seeds, max_distance, truth):
    rows = []
    for n_seq in sizes:
        got, cover, zs, p_low, xs = 0, 0, [], 0, []
        for seed in range(seeds):
            res = _xi_run(model, n_seq, 1000 * n_seq + seed, max_distance)
            p_low += bool(math.isfinite(res.p_value) and res.p_value < 0.01)
            if res.success:
                got += 1
                z = (res.xi - truth) / res.error
                zs.append(z)
                xs.append(res.xi)
                cover += abs(z) <= 1.96
        rows.append({"n_sequences": n_seq, "xi_true": truth, "xi_reported": _binom(got, seeds),
                     "coverage_95": _binom(cover, got), "z_mean": float(np.mean(zs)) if zs else None,
                     "z_sd": float(np.std(zs, ddof=1)) if len(zs) > 1 else None,
                     "median_xi": float(np.median(xs)) if xs else None,
                     "called_not_exponential": _binom(p_low, seeds)})
    return rows


def potts_table(seeds: int):
    model = PottsChain.potts(128, 3, coupling=1.6)
    return _coverage(model, (20, 32, 64, 128), seeds, 40, exact.correlation_length(model))


def _symmetric_chain(n_sites, q, xi):
    # symmetric Potts chain, zero field: lambda_1 / lambda_0 = (e^J - 1) / (e^J + q - 1) = exp(-1 / xi)
    rho = math.exp(-1.0 / xi)
    coupling = math.log((1 + (q - 1) * rho) / (1 - rho))
    return PottsChain.potts(n_sites, q, coupling=coupling)


def exponential_table(seeds: int):
    model = _symmetric_chain(320, 4, 30.0)
    return _coverage(model, (500, 2000), seeds, 240, exact.correlation_length(model))


def two_exponential_table(seeds: int):
    couplings = np.array([[2.2, 0.0, 0.0], [0.0, 0.4, 0.0], [0.0, 0.0, 0.4]])
    model = PottsChain(96, couplings, np.array([0.0, 0.6, 0.6]))
    truth = exact.correlation_length(model)
    return _coverage(model, (500,), seeds, 40, truth)


def null_sentence_table(seeds: int):
    from ising_moe.data import ExpertSequences
    from ising_moe.report.measure import _explain, null_fractions

    model = _symmetric_chain(128, 4, 30.0)
    composition = persistence_named = 0
    shares = []
    for seed in range(seeds):
        x = exact.sample(model, 400, rng=seed)
        data = ExpertSequences(x[:, None, :, None], np.ones(x.shape, bool), 4, attrs={"model_id": "markov"})
        st = M.measure(data, max_distance=100, block_sizes=(), n_bootstrap=100, probe=False, seed=seed).layers[0]
        f = null_fractions(st)
        text = _explain(st, f)
        composition += ("is sequence composition" in text or "mostly sequence composition" in text)
        persistence_named += "persistence" in text
        if f["sequence"] is not None:
            shares.append(f["sequence"])
    return {"xi_true": 30.0, "length": 128, "n_sequences": 400, "says_composition": _binom(composition, seeds),
            "names_persistence": _binom(persistence_named, seeds),
            "median_within_sequence_share": float(np.median(shares)) if shares else None}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default=None, help="comma-separated table names")
    args = parser.parse_args()
    s = 40 if args.quick else 200
    tables = {"null": lambda: null_table(s), "potts": lambda: potts_table(s // 2),
              "exponential_30": lambda: exponential_table(s // 5), "two_exponentials": lambda: two_exponential_table(s // 5),
              "within_sequence_null": lambda: null_sentence_table(max(5, s // 20))}
    names = list(tables) if args.only is None else args.only.split(",")
    results = {}
    for name in names:
        t0 = time.perf_counter()
        results[name] = tables[name]()
        results[name + "_seconds"] = time.perf_counter() - t0
    emit("calibrate_xi", results)


if __name__ == "__main__":
    main()
