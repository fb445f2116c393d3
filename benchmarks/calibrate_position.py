"""Calibration of the test of position dependence on open correlated chains (prints JSON).

Data: stationary open Markov chains with ``q`` symmetric states and correlation length ``xi``
(``x_0`` uniform, then the state is kept with probability ``exp(-1 / xi)`` and redrawn uniformly
otherwise: ``C(r) = (1 - 1/q) exp(-r / xi)``), no position dependence at all. Reported: the
fraction of data sets with ``p <= 0.05`` and ``p <= 0.01`` (goal: the nominal level within its
binomial error) for the test of :func:`ising_moe.measure.position_dependence` (random reflections
of the sequences) and for two rotation nulls re-implemented here: by single positions (the former
test: it puts a seam inside a block) and by whole blocks (it misaligns the sequences' block profiles);
both reject too often. Plus the power on chains with a planted position trend.
``--quick`` for a short run.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from _common import emit
from ising_moe import measure as M


def markov_chains(n_seq: int, n: int, q: int, xi: float, rng, field=None) -> np.ndarray:
    """Exact samples of the stationary open chain; ``field`` (n, q) tilts the redraws by position."""
    keep = rng.random((n_seq, n)) < math.exp(-1.0 / xi)
    keep[:, 0] = False
    if field is None:
        fresh = rng.integers(0, q, size=(n_seq, n))
    else:
        p = np.exp(field)
        p /= p.sum(axis=1, keepdims=True)
        fresh = np.minimum((p.cumsum(axis=1)[None] < rng.random((n_seq, n, 1))).sum(axis=2), q - 1)
    last = np.where(keep, 0, np.arange(n)[None, :])
    np.maximum.accumulate(last, axis=1, out=last)  # position of the last redraw
    return np.take_along_axis(fresh, last, axis=1)


def single_position_rotation_p(x, n_states, n_blocks, n_shuffles, rng) -> float:
    """The former null: every sequence rotated by a random number of single positions."""
    n_seq, n = x.shape
    block = (np.arange(n) * n_blocks) // n

    def mi(idx):
        t = np.bincount(idx, minlength=n_blocks * n_states).reshape(n_blocks, n_states) / idx.size
        outer = t.sum(axis=1, keepdims=True) @ t.sum(axis=0, keepdims=True)
        nz = t > 0
        return float((t[nz] * np.log2(t[nz] / outer[nz])).sum())

    observed = mi((block[None, :] * n_states + x).ravel())
    null = np.empty(n_shuffles)
    for b in range(n_shuffles):
        u = (np.arange(n)[None, :] + rng.integers(0, n, size=(n_seq, 1))) % n
        null[b] = mi((block[u] * n_states + x).ravel())
    return float((1 + (null >= observed).sum()) / (1 + n_shuffles))


def whole_block_rotation_p(x, n_states, n_blocks, n_shuffles, rng) -> float:
    """Every sequence rotated by a random number of whole blocks (equal blocks, remainder left out)."""
    n_seq, n = x.shape
    length = n // n_blocks
    tables = np.zeros((n_seq, n_blocks, n_states))
    s, t = np.nonzero(np.ones((n_seq, n_blocks * length), bool))
    np.add.at(tables, (s, t // length, x[s, t]), 1.0)
    observed = M.rates._mi_bits(tables.sum(axis=0))
    idx = np.arange(n_blocks)
    null = np.array([M.rates._mi_bits(tables[np.arange(n_seq)[:, None], (idx[None, :] - d[:, None]) % n_blocks].sum(axis=0))
                     for d in rng.integers(0, n_blocks, size=(n_shuffles, n_seq))])
    return float((1 + (null >= observed).sum()) / (1 + n_shuffles))


def _binom(k, n):
    p = k / n if n else math.nan
    return {"rate": p, "k": int(k), "n": int(n), "se": math.sqrt(p * (1 - p) / n) if n else None}


def null_table(seeds: int, n_shuffles: int):
    out = []
    for n, n_blocks, n_seq, q, xi in ((64, 16, 40, 4, 30.0), (128, 16, 40, 4, 30.0), (100, 16, 30, 4, 30.0),
                                      (128, 16, 40, 8, 5.0)):
        new, old, blocks = [], [], []
        for seed in range(seeds):
            rng = np.random.default_rng([seed, n, n_seq, q])
            x = markov_chains(n_seq, n, q, xi, rng)
            new.append(M.position_dependence(x, None, q, n_blocks, n_shuffles, n_bootstrap=2, rng=rng).p_value)
            old.append(single_position_rotation_p(x, q, n_blocks, n_shuffles, rng))
            blocks.append(whole_block_rotation_p(x, q, n_blocks, n_shuffles, rng))
        new, old, blocks = np.array(new), np.array(old), np.array(blocks)
        out.append({"n_positions": n, "n_blocks": n_blocks, "n_sequences": n_seq, "q": q, "xi": xi,
                    **{f"{name}_p_le_{a}": _binom((p <= a).sum(), seeds)
                       for name, p in (("reflection", new), ("rotation_single_positions", old),
                                       ("rotation_whole_blocks", blocks)) for a in (0.05, 0.01)}})
    return out


def power_table(seeds: int, n_shuffles: int):
    out = []
    for amplitude in (0.3, 0.6):
        hits = 0
        for seed in range(seeds):
            rng = np.random.default_rng([seed, 99])
            field = amplitude * np.outer(np.linspace(-1, 1, 128), np.array([1.0, -1.0, 0.0, 0.0]))
            x = markov_chains(40, 128, 4, 30.0, rng, field=field)
            hits += M.position_dependence(x, None, 4, 16, n_shuffles, n_bootstrap=2, rng=rng).p_value <= 0.05
        out.append({"n_positions": 128, "n_sequences": 40, "xi": 30.0, "field_amplitude": amplitude,
                    "p_le_0.05": _binom(hits, seeds)})
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    seeds, n_shuffles = (200, 99) if args.quick else (1000, 199)
    results = {}
    for name, fn in (("null", lambda: null_table(seeds, n_shuffles)), ("power", lambda: power_table(seeds // 4, n_shuffles))):
        t0 = time.perf_counter()
        results[name] = fn()
        results[name + "_seconds"] = time.perf_counter() - t0
    emit("calibrate_position", results)


if __name__ == "__main__":
    main()
