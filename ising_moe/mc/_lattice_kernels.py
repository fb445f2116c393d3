"""Numba kernels of the layer x position lattice sampler (private; see :mod:`ising_moe.mc.lattice`).

One chain is one sequence's lattice ``x`` (n_layers, n_sites), conditioned on its token rows; only
the first ``length`` positions are sampled. Parameter arrays (log-weights, see
:mod:`ising_moe.fit.lattice.params`): ``token`` (Λ, R, q), ``coupling`` (Λ, q, q) along the text
(``coupling[l, x_i, x_{i+1}]``), ``cross`` (P, q, q) between the layers ``pairs[p] = (l, m)`` of one
position (``cross[p, x_l, x_m]``).

Random numbers as in :mod:`ising_moe.mc._kernels`: every chain owns a xoshiro256** state, so the
results of a seed do not depend on the number of threads.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from .._numba import njit
from ._kernels import lazy_flip_accepted, next_below, next_double

HEAT_BATH, METROPOLIS = 0, 1


@njit(inline="always")
def site_logits(x, row, l, i, n, token, coupling, coupling_t, cross, cross_t, pairs, out):
    """Conditional log-weights ``out[a]`` of site ``(l, i)`` in state ``a`` given every other site.

    ``x`` (Λ, n_sites) is the chain, ``row`` the token row of position ``i``, ``n`` the length.
    ``coupling_t``, ``cross_t``: the tables transposed, so that every inner loop reads a contiguous
    row (a column of a (q, q) table is q cache lines at q = 64).
    """
    q = out.shape[0]
    for a in range(q):
        out[a] = token[l, row, a]
    if i > 0:
        left = x[l, i - 1]
        for a in range(q):
            out[a] += coupling[l, left, a]
    if i < n - 1:
        right = x[l, i + 1]
        for a in range(q):
            out[a] += coupling_t[l, right, a]
    for p in range(pairs.shape[0]):
        if pairs[p, 0] == l:
            other = x[pairs[p, 1], i]
            for a in range(q):
                out[a] += cross_t[p, other, a]
        elif pairs[p, 1] == l:
            other = x[pairs[p, 0], i]
            for a in range(q):
                out[a] += cross[p, other, a]


@njit(inline="always")
def site_delta(x, row, l, i, n, old, new, token, coupling, cross, pairs):
    """``log w(new) - log w(old)`` of site ``(l, i)`` (two states only: the Metropolis test)."""
    d = token[l, row, new] - token[l, row, old]
    if i > 0:
        left = x[l, i - 1]
        d += coupling[l, left, new] - coupling[l, left, old]
    if i < n - 1:
        right = x[l, i + 1]
        d += coupling[l, new, right] - coupling[l, old, right]
    for p in range(pairs.shape[0]):
        if pairs[p, 0] == l:
            other = x[pairs[p, 1], i]
            d += cross[p, new, other] - cross[p, old, other]
        elif pairs[p, 1] == l:
            other = x[pairs[p, 0], i]
            d += cross[p, other, new] - cross[p, other, old]
    return d


@njit
def heat_bath_sweep(x, rows, n, st, token, coupling, coupling_t, cross, cross_t, pairs, buf):
    """One sequential heat-bath sweep (layer by layer, positions in order) of one chain."""
    q = buf.shape[0]
    for l in range(x.shape[0]):
        for i in range(n):
            site_logits(x, rows[i], l, i, n, token, coupling, coupling_t, cross, cross_t, pairs, buf)
            top = buf[0]
            for a in range(1, q):
                top = max(top, buf[a])
            total = 0.0
            for a in range(q):
                total += math.exp(buf[a] - top)
                buf[a] = total
            target = next_double(st) * total
            a = 0
            while a < q - 1 and buf[a] <= target:
                a += 1
            x[l, i] = a
    return x.shape[0] * n


@njit
def metropolis_sweep(x, rows, n, st, token, coupling, cross, pairs):
    """One sequential Metropolis sweep: a uniform other state, accepted with ``min(1, w'/w)``.

    For ``q = 2`` the flip is proposed with probability 1/2 (:func:`~ising_moe.mc._kernels.lazy_flip_accepted`),
    for the reason given in :func:`ising_moe.mc._kernels.metropolis_sweep`. Returns the accepted moves.
    """
    q = token.shape[2]
    accepted = 0
    for l in range(x.shape[0]):
        for i in range(n):
            old = x[l, i]
            new = 1 - old if q == 2 else (old + 1 + next_below(st, q - 1)) % q
            d = site_delta(x, rows[i], l, i, n, old, new, token, coupling, cross, pairs)
            if q == 2:
                ok = lazy_flip_accepted(st, math.exp(min(d, 0.0)), math.exp(min(-d, 0.0)))
            else:
                ok = d >= 0.0 or next_double(st) < math.exp(d)
            if ok:
                x[l, i] = new
                accepted += 1
    return accepted


@njit(parallel=True)
def run_sweeps(spins, rows, lengths, rng_state, token, coupling, coupling_t, cross, cross_t, pairs, n_sweeps, update,
               accepted):
    """``n_sweeps`` sweeps of every chain (``prange`` over chains); ``accepted[c]`` += accepted moves.
    ``coupling_t``, ``cross_t``: the tables transposed (:func:`site_logits`).

    ``spins`` (C, Λ, n_sites) int64 are updated in place, ``rows`` (C, n_sites), ``lengths`` (C,),
    ``rng_state`` (C, 4) uint64 advanced in place.
    """
    q = token.shape[2]
    for c in prange(spins.shape[0]):
        buf = np.empty(q)
        st = rng_state[c]
        x = spins[c]
        for _ in range(n_sweeps):
            if update == HEAT_BATH:
                accepted[c] += heat_bath_sweep(x, rows[c], lengths[c], st, token, coupling, coupling_t, cross, cross_t,
                                               pairs, buf)
            else:
                accepted[c] += metropolis_sweep(x, rows[c], lengths[c], st, token, coupling, cross, pairs)
