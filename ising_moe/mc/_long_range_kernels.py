"""Numba kernels of the long-range samplers (couplings up to distance R; private, see :mod:`.samplers`).

Same conventions as :mod:`._kernels`: per-chain xoshiro256** states, ``lf`` (n_f, q) = ``beta h``,
``lj`` (R, q, q) = ``beta J_d``, ``bond_p`` of Potts-form couplings for the Wolff update.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._numba import njit
from ._kernels import (
    HEAT_BATH,
    METROPOLIS,
    METROPOLIS_RANDOM,
    WOLFF,
    _record,
    _row,
    lazy_flip_accepted,
    next_below,
    next_double,
)


@njit(inline="always")
def _partner(i, d, n, periodic):
    """Site ``i + d`` (``d`` may be negative), or -1 outside an open chain."""
    j = i + d
    if periodic:
        if j >= n:
            j -= n
        elif j < 0:
            j += n
        return j
    return j if 0 <= j < n else -1


@njit
def _lr_log_weight(spins, i, a, lf, lj, periodic):
    """``beta (h_i(a) + sum_r J_r(s_{i-r}, a) + J_r(a, s_{i+r}))`` for site ``i`` in state ``a``."""
    n = spins.shape[0]
    w = lf[_row(lf, i), a]
    for r in range(1, lj.shape[0] + 1):
        j = _partner(i, -r, n, periodic)
        if j >= 0:
            w += lj[r - 1, spins[j], a]
        j = _partner(i, r, n, periodic)
        if j >= 0:
            w += lj[r - 1, a, spins[j]]
    return w


@njit
def lr_metropolis_sweep(spins, st, lf, lj, periodic, random_order):
    """Metropolis sweep of a long-range chain (``O(R)`` per update).

    Same rule as :func:`~._kernels.metropolis_sweep`, including the lazy flip proposal of
    sequential ``q = 2`` sweeps (zero-energy moves would otherwise be transported deterministically).
    """
    n = spins.shape[0]
    q = lf.shape[1]
    lazy = q == 2 and not random_order
    accepted = 0
    for step in range(n):
        i = next_below(st, n) if random_order else step
        old = spins[i]
        new = 1 - old if q == 2 else (old + 1 + next_below(st, q - 1)) % q
        dlog = _lr_log_weight(spins, i, new, lf, lj, periodic) - _lr_log_weight(spins, i, old, lf, lj, periodic)
        if lazy:
            ok = lazy_flip_accepted(st, min(np.exp(dlog), 1.0), 1.0)
        else:
            ok = dlog >= 0.0 or next_double(st) < np.exp(dlog)
        if ok:
            spins[i] = new
            accepted += 1
    return accepted


@njit
def lr_heat_bath_sweep(spins, st, lf, lj, periodic, buf):
    """Sequential heat-bath sweep of a long-range chain (``O(R q)`` per update)."""
    n = spins.shape[0]
    q = lf.shape[1]
    for i in range(n):
        m = -np.inf
        for a in range(q):
            buf[a] = _lr_log_weight(spins, i, a, lf, lj, periodic)
            if buf[a] > m:
                m = buf[a]
        total = 0.0
        for a in range(q):
            total += np.exp(buf[a] - m)
            buf[a] = total
        target = next_double(st) * total
        a = 0
        while a < q - 1 and buf[a] <= target:
            a += 1
        spins[i] = a
    return n


@njit
def lr_wolff_sweep(spins, st, lf, bond_p, periodic, in_cluster, stack, n_updates, visits):
    """Wolff updates over all pairs within range (Potts-form ``J_r >= 0``); see :func:`wolff_sweep`.

    Each pair ``(i, i +- r)`` with equal states is added with ``p_r = 1 - exp(-beta J_r)`` when
    ``i`` enters the cluster; fields enter through the acceptance, as in :func:`wolff_sweep`.
    """
    n = spins.shape[0]
    q = lf.shape[1]
    max_r = bond_p.shape[0]
    visited = 0
    done = 0
    accepted = 0
    while (n_updates == 0 and visited < n) or done < n_updates:
        done += 1
        seed = next_below(st, n)
        s0 = spins[seed]
        in_cluster[seed] = True
        stack[0] = seed
        top = 1
        size = 1
        head = 0
        while head < top:
            i = stack[head]
            head += 1
            for r in range(1, max_r + 1):
                for sign in (-1, 1):
                    j = _partner(i, sign * r, n, periodic)
                    if j >= 0 and not in_cluster[j] and spins[j] == s0:
                        if next_double(st) < bond_p[r - 1]:
                            in_cluster[j] = True
                            stack[top] = j
                            top += 1
                            size += 1
        new = (s0 + 1 + next_below(st, q - 1)) % q
        dlog = 0.0
        for k in range(size):
            fi = _row(lf, stack[k])
            dlog += lf[fi, new] - lf[fi, s0]
        flip = dlog >= 0.0 or next_double(st) < np.exp(dlog)
        for k in range(size):
            if flip:
                spins[stack[k]] = new
            in_cluster[stack[k]] = False
        accepted += flip
        visited += size
    visits[0] += visited
    visits[1] += done
    return accepted


@njit
def lr_energy(spins, fields, couplings, periodic, occupation):
    """``E(s)`` of a long-range chain (without beta); ``occupation`` is unused (the signature of
    :func:`~._kernels.nn_energy`)."""
    n = spins.shape[0]
    e = 0.0
    for i in range(n):
        e -= fields[_row(fields, i), spins[i]]
        for r in range(1, couplings.shape[0] + 1):
            j = i + r
            if j >= n:
                if not periodic:
                    break
                j -= n
            e -= couplings[r - 1, spins[i], spins[j]]
    return e


@njit(parallel=True)
def run_long_range(kind, spins, states, lf, lj, bond_p, fields, couplings, periodic, n_burnin, save_every,
                   energy, occupation, overlap, site_counts, snapshots, accepted, wolff_updates):
    """Long-range counterpart of :func:`run_nearest_neighbour` (Metropolis, heat-bath, Wolff)."""
    n_chains, n = spins.shape
    q = lf.shape[1]
    n_sweeps = energy.shape[1]
    for c in prange(n_chains):
        row = spins[c]
        st = states[c]
        buf = np.empty(q)
        in_cluster = np.zeros(n, dtype=np.bool_)
        stack = np.empty(n, dtype=np.int64)
        visits = np.zeros(2, dtype=np.int64)
        acc = 0
        for sweep in range(n_burnin + n_sweeps):
            if sweep == n_burnin and kind == WOLFF and wolff_updates[c] == 0:
                wolff_updates[c] = max(1, int(round(n * visits[1] / max(visits[0], 1))))
            if kind == METROPOLIS or kind == METROPOLIS_RANDOM:
                a = lr_metropolis_sweep(row, st, lf, lj, periodic, kind == METROPOLIS_RANDOM)
            elif kind == HEAT_BATH:
                a = lr_heat_bath_sweep(row, st, lf, lj, periodic, buf)
            else:
                a = lr_wolff_sweep(row, st, lf, bond_p, periodic, in_cluster, stack,
                                   wolff_updates[c] if sweep >= n_burnin else 0, visits)
            if sweep < n_burnin:
                continue
            acc += a
            t = sweep - n_burnin
            _record(row, t, periodic, save_every, occupation[c], overlap[c], site_counts[c], snapshots[c])
            energy[c, t] = lr_energy(row, fields, couplings, periodic, occupation[c, t])
        accepted[c] = acc
