"""Numba kernels of the lattice fitters (private): counts, pseudo-likelihood, column marginals.

Arrays as in :mod:`ising_moe.mc._lattice_kernels`: ``states`` (S, Λ, n), ``rows`` (S, n),
``lengths`` (S,), ``token`` (Λ, R, q), ``coupling`` (Λ, q, q), ``cross`` (P, q, q), ``pairs`` (P, 2).
Parallel kernels split the sequences into fixed chunks with their own accumulators, summed in
chunk order: results do not depend on the number of threads.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ..._numba import njit
from ...mc._lattice_kernels import site_logits


@njit
def _count_one(x, rows, n, pairs, tok, coup, cross):
    lam = x.shape[0]
    for l in range(lam):
        for i in range(n):
            tok[l, rows[i], x[l, i]] += 1.0
        for i in range(n - 1):
            coup[l, x[l, i], x[l, i + 1]] += 1.0
    for p in range(pairs.shape[0]):
        a, b = pairs[p, 0], pairs[p, 1]
        for i in range(n):
            cross[p, x[a, i], x[b, i]] += 1.0


@njit
def lattice_counts(states, rows, lengths, pairs, tok, coup, cross):
    """Add the counts of every sequence to ``tok`` (Λ, R, q), ``coup`` (Λ, q, q), ``cross`` (P, q, q)."""
    for s in range(states.shape[0]):
        _count_one(states[s], rows[s], lengths[s], pairs, tok, coup, cross)


@njit(parallel=True)
def lattice_counts_per_sequence(states, rows, lengths, pairs, tok, coup, cross):
    """Counts of each sequence ``s`` into ``tok[s]``, ``coup[s]``, ``cross[s]`` (zeroed by the caller)."""
    for s in prange(states.shape[0]):
        _count_one(states[s], rows[s], lengths[s], pairs, tok[s], coup[s], cross[s])


@njit
def _conditional(x, row, l, i, n, token, coupling, coupling_t, cross, cross_t, pairs, buf):
    """``buf[a] = P(x_{l,i} = a | rest, t)`` (the sampler's :func:`site_logits`, normalised); returns
    ``log P`` of the observed state."""
    q = buf.shape[0]
    site_logits(x, row, l, i, n, token, coupling, coupling_t, cross, cross_t, pairs, buf)
    top = buf[0]
    for a in range(1, q):
        top = max(top, buf[a])
    total = 0.0
    for a in range(q):
        buf[a] = math.exp(buf[a] - top)
        total += buf[a]
    inv = 1.0 / total
    for a in range(q):
        buf[a] *= inv
    return math.log(buf[x[l, i]])


@njit
def _scatter(v, x, row, l, i, n, pairs, tok, coup, coup_t, cross, cross_t):
    """Add ``v`` (q,) to the rows of every table cell that site ``(l, i)`` in state ``a`` touches:
    its token cell ``tok[l, row, a]``, the couplings with its left neighbour ``coup[l, left, a]`` and
    its right one (transposed: ``coup_t[l, right, a]``), and its cross-layer pairs (``cross`` when
    the site is the pair's second layer, ``cross_t`` when it is the first)."""
    q = v.shape[0]
    for a in range(q):
        tok[l, row, a] += v[a]
    if i > 0:
        left = x[l, i - 1]
        for a in range(q):
            coup[l, left, a] += v[a]
    if i < n - 1:
        right = x[l, i + 1]
        for a in range(q):
            coup_t[l, right, a] += v[a]
    for p in range(pairs.shape[0]):
        if pairs[p, 0] == l:
            other = x[pairs[p, 1], i]
            for a in range(q):
                cross_t[p, other, a] += v[a]
        elif pairs[p, 1] == l:
            other = x[pairs[p, 0], i]
            for a in range(q):
                cross[p, other, a] += v[a]


@njit(parallel=True)
def pseudo_likelihood(states, rows, lengths, token, coupling, coupling_t, cross, cross_t, pairs, chunk_bounds, value,
                      g_tok, g_coup, g_coup_t, g_cross, g_cross_t):
    """Log pseudo-likelihood ``sum_{s,l,i} log P(x_{l,i} | rest, t)`` and its gradient.

    Chunk ``k`` (sequences ``chunk_bounds[k] .. chunk_bounds[k+1]-1``) writes ``value[k]`` and the
    gradients ``g_tok[k]`` (Λ, R, q), ``g_coup[k]`` (Λ, q, q), ``g_cross[k]`` (P, q, q) with respect to
    the q-indexed arrays (zeroed by the caller), the entries reached through their second index
    transposed into ``g_coup_t[k]`` and ``g_cross_t[k]`` (to be added, transposed, by the caller).
    A within-layer coupling enters two conditionals (its left and its right site), a cross-layer
    coupling two (its two layers), as in the likelihood.
    """
    q = token.shape[2]
    lam = states.shape[1]
    for k in prange(chunk_bounds.shape[0] - 1):
        buf = np.empty(q)
        v = 0.0
        for s in range(chunk_bounds[k], chunk_bounds[k + 1]):
            x, n, r = states[s], lengths[s], rows[s]
            for l in range(lam):
                for i in range(n):
                    v += _conditional(x, r[i], l, i, n, token, coupling, coupling_t, cross, cross_t, pairs, buf)
                    for a in range(q):
                        buf[a] = -buf[a]
                    buf[x[l, i]] += 1.0  # indicator - conditional probability
                    _scatter(buf, x, r[i], l, i, n, pairs, g_tok[k], g_coup[k], g_coup_t[k], g_cross[k],
                             g_cross_t[k])
        value[k] = v


@njit(parallel=True)
def conditional_moments(states, rows, lengths, token, coupling, coupling_t, cross, cross_t, pairs, chunk_bounds, mean,
                        var):
    """Rao-Blackwellised counts of the sites' states: every indicator ``1[x_{l,i} = a]`` replaced by
    its conditional probability ``p_{l,i}(a)`` given the rest (same expectation, less noise), and
    ``p (1 - p)``, the conditional variance, summed alike.

    ``mean`` and ``var`` are tuples of five per-chunk arrays laid out as the gradients of
    :func:`pseudo_likelihood` (token, coupling, coupling transposed, cross, cross transposed; zeroed
    by the caller): a pair cell gets one estimate from each of its two sites' conditionals.
    """
    q = token.shape[2]
    lam = states.shape[1]
    for k in prange(chunk_bounds.shape[0] - 1):
        buf = np.empty(q)
        var_buf = np.empty(q)
        for s in range(chunk_bounds[k], chunk_bounds[k + 1]):
            x, n, r = states[s], lengths[s], rows[s]
            for l in range(lam):
                for i in range(n):
                    _conditional(x, r[i], l, i, n, token, coupling, coupling_t, cross, cross_t, pairs, buf)
                    for a in range(q):
                        var_buf[a] = buf[a] * (1.0 - buf[a])
                    _scatter(buf, x, r[i], l, i, n, pairs, mean[0][k], mean[1][k], mean[2][k], mean[3][k],
                             mean[4][k])
                    _scatter(var_buf, x, r[i], l, i, n, pairs, var[0][k], var[1][k], var[2][k], var[3][k],
                             var[4][k])


@njit
def add_row_marginals(marg, rows, lengths, per_row):
    """``per_row[rows[b, i]] += marg[b, i]`` for every position inside each sequence's length.

    ``marg`` (B, n, S) column marginals, ``per_row`` (R, S): the expected column counts per token row.
    """
    size = marg.shape[2]
    for b in range(marg.shape[0]):
        for i in range(lengths[b]):
            r = rows[b, i]
            for c in range(size):
                per_row[r, c] += marg[b, i, c]


@njit(parallel=True)
def lattice_moments(states, rows, lengths, pairs, chunk_bounds, tok_sum, tok_sq, coup_sum, coup_sq, cross_sum,
                    cross_sq):
    """Sums over sequences of the counts and of their squares, per chunk ``k`` (into ``[k]``).

    ``tok_*`` (K, Λ, R, q), ``coup_*`` (K, Λ, q, q), ``cross_*`` (K, P, q, q), zeroed by the caller.
    Each sequence's counts are accumulated in scratch tables and only the cells it touched are
    squared and reset, so a sequence costs O(Λ n) whatever R and q.
    """
    lam = states.shape[1]
    q = tok_sum.shape[3]
    n_rows = tok_sum.shape[2]
    n_sites = states.shape[2]
    n_pairs = pairs.shape[0]
    for k in prange(chunk_bounds.shape[0] - 1):
        t_buf = np.zeros((n_rows, q))
        c_buf = np.zeros((q, q))
        touched_r = np.empty(n_sites, np.int64)
        touched_a = np.empty(n_sites, np.int64)
        touched_b = np.empty(n_sites, np.int64)
        for s in range(chunk_bounds[k], chunk_bounds[k + 1]):
            x = states[s]
            r = rows[s]
            n = lengths[s]
            for l in range(lam):
                for i in range(n):
                    t_buf[r[i], x[l, i]] += 1.0
                    touched_r[i] = r[i]
                    touched_a[i] = x[l, i]
                for i in range(n):
                    v = t_buf[touched_r[i], touched_a[i]]
                    if v != 0.0:
                        tok_sum[k, l, touched_r[i], touched_a[i]] += v
                        tok_sq[k, l, touched_r[i], touched_a[i]] += v * v
                        t_buf[touched_r[i], touched_a[i]] = 0.0
                for i in range(n - 1):
                    c_buf[x[l, i], x[l, i + 1]] += 1.0
                for i in range(n - 1):
                    v = c_buf[x[l, i], x[l, i + 1]]
                    if v != 0.0:
                        coup_sum[k, l, x[l, i], x[l, i + 1]] += v
                        coup_sq[k, l, x[l, i], x[l, i + 1]] += v * v
                        c_buf[x[l, i], x[l, i + 1]] = 0.0
            for p in range(n_pairs):
                a, b = pairs[p, 0], pairs[p, 1]
                for i in range(n):
                    c_buf[x[a, i], x[b, i]] += 1.0
                for i in range(n):
                    v = c_buf[x[a, i], x[b, i]]
                    if v != 0.0:
                        cross_sum[k, p, x[a, i], x[b, i]] += v
                        cross_sq[k, p, x[a, i], x[b, i]] += v * v
                        c_buf[x[a, i], x[b, i]] = 0.0
