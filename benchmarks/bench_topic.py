"""The topic chain's exact forward-backward (K q joint states, Kronecker transition) against a plain
NumPy forward-backward of the same chain in the same run. Prints JSON.

Both compute, for N sequences of L sites with their own unaries over the K q joint states of
(topic, expert), ``log Z``, the site marginals (summed over sequences) and the pair statistics
that the topic chain's gradient needs (topic-topic and expert-expert bond counts). The baseline
is vectorised over sequences: a dense (S, S) transition matrix, scaled messages, ``einsum`` for
the bond marginals; the package uses :func:`ising_moe.exact.product.forward_backward` with the
Kronecker transition (``O(S (K + q))`` per site instead of ``O(S^2)``; both factors here are
Potts-form, ``O(S)`` each), with full per-factor pair counts and with their diagonals only (what
the topic chain's gradient needs). Agreement of the two is checked (max |difference|).

    python benchmarks/bench_topic.py [--quick] [--threads 2]
"""

from __future__ import annotations

import argparse

import numba
import numpy as np
from _common import best_time, emit

from ising_moe.exact import product as PR


def numpy_forward_backward(unary, log_w):
    """Plain NumPy scaled forward-backward over dense joint states: log Z (N,), summed site
    marginals (L, S) and summed bond marginals (S, S)."""
    n, L, S = unary.shape
    shift = unary.max(axis=2, keepdims=True)
    f = np.exp(unary - shift)
    wshift = log_w.max()
    w = np.exp(log_w - wshift)
    alpha = np.empty((n, L, S))
    norms = np.empty((n, L))
    a = f[:, 0]
    norms[:, 0] = a.sum(axis=1)
    alpha[:, 0] = a / norms[:, :1]
    for i in range(1, L):
        a = (alpha[:, i - 1] @ w) * f[:, i]
        norms[:, i] = a.sum(axis=1)
        alpha[:, i] = a / norms[:, i:i + 1]
    log_z = np.log(norms).sum(axis=1) + shift[:, :, 0].sum(axis=1) + (L - 1) * wshift
    beta = np.ones((n, S))
    site = np.zeros((L, S))
    pairs = np.zeros((S, S))
    site[L - 1] = alpha[:, L - 1].sum(axis=0)
    for i in range(L - 2, -1, -1):
        u = f[:, i + 1] * beta / norms[:, i + 1:i + 2]
        pairs += w * np.einsum("na,nb->ab", alpha[:, i], u)
        beta = u @ w.T
        m = alpha[:, i] * beta
        site[i] = (m / m.sum(axis=1, keepdims=True)).sum(axis=0)
    return log_z, site, pairs


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    rng = np.random.default_rng(0)
    n, L, q = (200, 128, 8) if args.quick else (600, 256, 8)
    results = []
    for k in (2, 4):
        S = k * q
        unary = rng.normal(size=(n, L, S))
        kappa, coupling = 3.0 * np.eye(k), 0.5 * (np.eye(q) - 1.0 / q)
        trans = PR.Transition.kronecker(kappa, coupling)
        log_w = (kappa[:, None, :, None] + coupling[None, :, None, :]).reshape(S, S)
        PR.forward_backward(unary[:2], trans, marginals=False)  # compile outside the timing
        PR.forward_backward(unary[:2], trans, marginals=False, pairs="diagonal")
        ours = PR.forward_backward(unary, trans, marginals=False)
        base = numpy_forward_backward(unary, log_w)
        tens = base[2].reshape(k, q, k, q)
        diff = max(float(np.abs(ours.log_partition - base[0]).max()),
                   float(np.abs(ours.site_counts - base[1]).max()),
                   float(np.abs(ours.pair_counts[0] - tens.sum(axis=(1, 3))).max()),
                   float(np.abs(ours.pair_counts[1] - tens.sum(axis=(0, 2))).max()))
        t_ours = best_time(lambda: PR.forward_backward(unary, trans, marginals=False), repeat=3)
        # what the topic chain's gradient uses: Potts factors, diagonal pair counts only
        t_diag = best_time(lambda: PR.forward_backward(unary, trans, marginals=False, pairs="diagonal"), repeat=3)
        t_base = best_time(lambda: numpy_forward_backward(unary, log_w), repeat=2)
        results.append({"n_topics": k, "n_states": q, "joint_states": S, "n_sequences": n, "n_sites": L,
                        "seconds_product_kronecker": t_ours, "seconds_numpy_dense": t_base,
                        "speedup": t_base / t_ours, "seconds_product_diagonal_pairs": t_diag,
                        "speedup_diagonal_pairs": t_base / t_diag, "max_abs_difference": diff,
                        "sites_per_second": n * L / t_ours})
    emit("topic chain forward-backward (K q joint states) vs plain NumPy", results)


if __name__ == "__main__":
    main()
