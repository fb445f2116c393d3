"""Numba kernels of the O(N) cluster sampler for couplings of unbounded range (private; see :mod:`.samplers`).

The method is Fukui and Todo's (J. Comput. Phys. 228, 2629 (2009)): a Swendsen-Wang update in
which the bonds are drawn as a Poisson process over *all* pairs instead of pair by pair.

Why it is Swendsen-Wang exactly. For Potts-form couplings ``lambda_ij = beta J_ij >= 0`` (``J_ij``
the coefficient of ``delta(s_i, s_j)``), give every pair an independent Poisson number of "bond
events" with mean ``lambda_ij``. The probability that a pair has at least one event is
``1 - exp(-lambda_ij)``, the Swendsen-Wang bond probability; an event on a pair with different
states is discarded, exactly as Swendsen-Wang never bonds unequal neighbours. The superposition of
the pairs' Poisson processes is one Poisson process of total rate ``Lambda = sum_ij lambda_ij``
whose events land on pair ``ij`` with probability ``lambda_ij / Lambda``. So one sweep draws
``Poisson(Lambda)`` events (as exponential gaps in ``[0, Lambda)``), each one a distance ``d``
(Walker's alias table over the distances, ``O(1)``) and a uniformly chosen pair at that distance,
and joins the pair in a union-find forest when its states agree. The cost is
``O(N + Lambda)`` and ``Lambda = beta J_potts N sum_d w(d)`` is ``O(N)`` whenever ``sum_d w(d)``
converges (``sigma > 0``), whatever the range.

Fields. Given the bonds, the Edwards-Sokal joint distribution factorises over clusters: cluster
``C`` takes state ``a`` with probability ``exp(beta sum_{i in C} h_i(a))`` normalised, which is
what :func:`pl_swendsen_wang_sweep` draws (the same rule as the nearest-neighbour Swendsen-Wang
kernel). This is exact for any fields; strong fields only slow the mixing of large clusters.

Energy in ``O(N)``. Given the configuration ``s``, the number ``n_sat`` of events that land on
pairs with equal states is Poisson with mean ``sum_ij lambda_ij delta(s_i, s_j)``; so
``-n_sat / beta - c W`` (``K = J_potts delta + c``, ``W = sum_{i<j} w``) is an unbiased estimate of
the pair energy of the configuration the sweep *started from* (Fukui and Todo's estimator).

Random numbers and measurement arrays follow :mod:`._kernels`.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._numba import njit
from ._kernels import _record, _row, next_below, next_double


@njit
def build_alias(weights, prob, alias):
    """Walker's alias table (Vose's construction) of the distribution ``weights / sum(weights)``.

    Parameters
    ----------
    weights : ndarray of shape (m,), >= 0, positive sum
    prob : ndarray of shape (m,), out
        Probability of keeping column ``k`` (else take ``alias[k]``).
    alias : ndarray of int64, shape (m,), out
    """
    m = weights.shape[0]
    total = weights.sum()
    scaled = weights * (m / total)
    small = np.empty(m, dtype=np.int64)
    large = np.empty(m, dtype=np.int64)
    ns = 0
    nl = 0
    for k in range(m):
        if scaled[k] < 1.0:
            small[ns] = k
            ns += 1
        else:
            large[nl] = k
            nl += 1
    while ns > 0 and nl > 0:
        ns -= 1
        s = small[ns]
        g = large[nl - 1]
        prob[s] = scaled[s]
        alias[s] = g
        scaled[g] = (scaled[g] + scaled[s]) - 1.0
        if scaled[g] < 1.0:
            nl -= 1
            small[ns] = g
            ns += 1
    # what is left has probability 1 up to rounding
    for k in range(nl):
        prob[large[k]] = 1.0
        alias[large[k]] = large[k]
    for k in range(ns):
        prob[small[k]] = 1.0
        alias[small[k]] = small[k]


@njit(inline="always")
def _find(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]  # path halving
        i = parent[i]
    return i


@njit
def pl_swendsen_wang_sweep(spins, st, lf, prob, alias, lam_total, periodic, parent, labels, order, start,
                           buf, counts):
    """One Swendsen-Wang update of a translation-invariant chain with couplings at every distance.

    Parameters
    ----------
    spins : ndarray of int32, shape (n,)
    st : ndarray of uint64, shape (4,)
        xoshiro256** state.
    lf : ndarray of shape (n_f, q)
        ``beta h``.
    prob, alias : ndarray of shape (D,)
        Alias table over the distances ``d = k + 1``, weights ``n_pairs(d) lambda_d``.
    lam_total : float
        ``Lambda``, the total event rate of one sweep.
    periodic : bool
        Pairs ``(i, (i + d) % n)`` with ``i`` uniform in ``0..n-1`` (each pair at ``d = n/2`` is then
        reached from both ends, which its halved table weight accounts for); open: ``(i, i + d)``
        with ``i`` uniform in ``0..n-d-1``.
    parent, labels, order : ndarray of int, shape (n,)
        Work arrays.
    start : ndarray of int, shape (n + 1,)
        Work array.
    buf : ndarray of shape (q,)
        Work array.
    counts : ndarray of int64, shape (2,)
        ``counts[0]``: events on equal-state pairs (``n_sat``) of this sweep; ``counts[1]``: events.

    Returns
    -------
    int
        Number of clusters.
    """
    n = spins.shape[0]
    q = lf.shape[1]
    n_dist = prob.shape[0]
    for i in range(n):
        parent[i] = i
    n_sat = 0
    n_events = 0
    t = -np.log(1.0 - next_double(st))
    while t < lam_total:
        u = next_double(st) * n_dist
        k = int(u)
        if u - k >= prob[k]:
            k = alias[k]
        d = k + 1
        if periodic:
            i = next_below(st, n)
            j = i + d
            if j >= n:
                j -= n
        else:
            i = next_below(st, n - d)
            j = i + d
        n_events += 1
        if spins[i] == spins[j]:
            n_sat += 1
            ri = _find(parent, i)
            rj = _find(parent, j)
            if ri != rj:
                if ri < rj:
                    parent[rj] = ri
                else:
                    parent[ri] = rj
        t -= np.log(1.0 - next_double(st))
    counts[0] = n_sat
    counts[1] = n_events
    # cluster labels 0..nc-1 in order of first site; labels[] first holds the label of each root
    for i in range(n):
        labels[i] = -1
    nc = 0
    for i in range(n):
        r = _find(parent, i)
        if labels[r] < 0:
            labels[r] = nc
            nc += 1
        order[i] = labels[r]  # order[] temporarily holds each site's label
    for i in range(n):
        labels[i] = order[i]
    # counting sort of the sites by cluster: start[c] .. start[c+1] in order[]
    for c in range(nc + 1):
        start[c] = 0
    for i in range(n):
        start[labels[i] + 1] += 1
    for c in range(nc):
        start[c + 1] += start[c]
    fill = parent  # reuse: next free slot of each cluster
    for c in range(nc):
        fill[c] = start[c]
    for i in range(n):
        c = labels[i]
        order[fill[c]] = i
        fill[c] += 1
    homogeneous = lf.shape[0] == 1
    for c in range(nc):
        size = start[c + 1] - start[c]
        if homogeneous:
            for a in range(q):
                buf[a] = size * lf[0, a]
        else:
            for a in range(q):
                buf[a] = 0.0
            for p in range(start[c], start[c + 1]):
                fi = order[p]
                for a in range(q):
                    buf[a] += lf[fi, a]
        m = buf[0]
        for a in range(1, q):
            m = max(m, buf[a])
        total = 0.0
        for a in range(q):
            buf[a] = np.exp(buf[a] - m)
            total += buf[a]
        target = next_double(st) * total
        acc = 0.0
        new = q - 1
        for a in range(q):
            acc += buf[a]
            if target < acc:
                new = a
                break
        for p in range(start[c], start[c + 1]):
            spins[order[p]] = new
    return nc


@njit
def field_energy(spins, fields):
    """``-sum_i h_i(s_i)`` (without beta)."""
    e = 0.0
    for i in range(spins.shape[0]):
        e -= fields[_row(fields, i), spins[i]]
    return e


@njit
def pair_energy(spins, weights, pair_couplings):
    """``-sum_{i<j} w(j - i) K(s_i, s_j)`` by the direct ``O(N^2)`` sum (weights image-summed on rings)."""
    n = spins.shape[0]
    e = 0.0
    for i in range(n):
        si = spins[i]
        for j in range(i + 1, n):
            e -= weights[j - i - 1] * pair_couplings[si, spins[j]]
    return e


@njit(parallel=True)
def run_power_law(spins, states, lf, prob, alias, lam_total, periodic, fields, beta, pair_const, weight_total,
                  weights, pair_couplings, estimate_energy, n_burnin, save_every, energy, occupation, overlap,
                  site_counts, snapshots, accepted):
    """Run every chain (``prange`` over chains) with :func:`pl_swendsen_wang_sweep`.

    ``energy[c, t]``: with ``estimate_energy``, the unbiased ``O(N)`` estimate of ``E`` of the
    configuration measured sweep ``t`` started from, ``field_energy - n_sat / beta - pair_const *
    weight_total``; otherwise the exact ``E`` of the configuration after sweep ``t`` (``O(N^2)``;
    used at ``beta = 0``, where the estimator is undefined). ``accepted[c]``: clusters summed.
    """
    n_chains, n = spins.shape
    q = lf.shape[1]
    n_sweeps = energy.shape[1]
    for c in prange(n_chains):
        row = spins[c]
        st = states[c]
        # int32 work arrays: half the memory traffic of the random accesses at large N
        parent = np.empty(n, dtype=np.int32)
        labels = np.empty(n, dtype=np.int32)
        order = np.empty(n, dtype=np.int32)
        start = np.empty(n + 1, dtype=np.int32)
        buf = np.empty(q)
        counts = np.zeros(2, dtype=np.int64)
        acc = 0
        for sweep in range(n_burnin + n_sweeps):
            e_field = field_energy(row, fields) if sweep >= n_burnin and estimate_energy else 0.0
            a = pl_swendsen_wang_sweep(row, st, lf, prob, alias, lam_total, periodic, parent, labels, order,
                                       start, buf, counts)
            if sweep < n_burnin:
                continue
            acc += a
            t = sweep - n_burnin
            _record(row, t, periodic, save_every, occupation[c], overlap[c], site_counts[c], snapshots[c])
            if estimate_energy:
                energy[c, t] = e_field - counts[0] / beta - pair_const * weight_total
            else:
                energy[c, t] = field_energy(row, fields) + pair_energy(row, weights, pair_couplings)
        accepted[c] = acc
