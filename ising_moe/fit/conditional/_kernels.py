"""Numba kernel of the conditional chains' likelihood and gradient (private; see
:mod:`ising_moe.fit.conditional.objective`). The message passing is in :mod:`ising_moe.fit.conditional._message_kernels`.

Parallel kernels split the sequences into ``n_chunks`` fixed chunks with their own accumulators,
summed in chunk order: results do not depend on the number of threads.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ..._numba import njit
from ._message_kernels import (
    KIND_FULL,
    KIND_NONE,
    KIND_POTTS,  # noqa: F401  (re-exported: the coupling kinds)
    _backward1,
    _backward1_observed,
    _backward2,
    _forward1,
    _forward2,
    _independent_log_likelihood,
    _observed_log_weight,
    _site_table,
)


@njit(parallel=True)
def crf_pass(states, observed, rows, lengths, holes, seq_weight, pw, pshift, tw, tshift, wc, cshift, g,
             g2, j2shift, kind, max_range, log_pi, n_chunks, want_grad, ll_out, g_pos, g_tok, g_pair, g_j2):
    """Exact log-likelihoods of a mixture of conditional chains and the gradient moments.

    Parameters
    ----------
    states, observed, rows : ndarray, shape (S, n)
        States, observed flags and token-table rows of every site.
    lengths : ndarray of int64, shape (S,)
    holes : ndarray of bool, shape (S,)
        Sequences with hidden sites inside their length (clamped pass needed).
    seq_weight : ndarray, shape (S,)
    pw, pshift : ndarray, shapes (K, n, q), (K, n)
        Exponentiated position fields of each component and their log shifts.
    tw, tshift : ndarray, shapes (K, R, q), (K, R)
        Exponentiated token fields.
    wc : ndarray, shape (K, q, q)
        Bond weights (``KIND_FULL``, or any kind at range 2), their log shifts ``cshift`` (K,).
    g, g2, j2shift : ndarray, shape (K,)
        ``e^J - 1`` (Potts), ``e^{J2} - 1`` and ``-J2 / q``.
    kind, max_range : int
    log_pi : ndarray, shape (K,)
        Log mixture weights.
    n_chunks : int
    want_grad : bool
    ll_out : ndarray, shape (S, K)
        ``log p_k(observed part of x_s | tokens)``.
    g_pos, g_tok, g_pair, g_j2 : ndarray, shapes (K, n, q), (K, R, q), (K, q, q), (K,)
        Overwritten with ``sum_s w_s r_sk (data - model moments)``, ``r_sk`` the responsibilities.

    Returns
    -------
    float
        ``sum_s w_s log sum_k pi_k p_k(x_s)``.
    """
    n_seq, n_max = states.shape
    n_comp, _, q = pw.shape
    n_rows = tw.shape[1]
    gsize = n_chunks if want_grad else 1
    c_pos = np.zeros((gsize, n_comp, n_max, q))
    c_tok = np.zeros((gsize, n_comp, n_rows, q))
    c_pair = np.zeros((gsize, n_comp, q, q))
    c_j2 = np.zeros((gsize, n_comp))
    c_total = np.zeros(n_chunks)
    two = max_range == 2
    indep = kind == KIND_NONE and not two
    for c in prange(n_chunks):
        f = np.empty((n_comp, n_max, q))
        fsh = np.empty((n_comp, n_max))
        m1 = n_max if not (two or indep) else 1
        m2 = n_max if two else 1
        af = np.empty((n_comp, m1, q))
        ac = np.empty((n_comp, m1, q))
        af2 = np.empty((n_comp, m2, q, q))
        ac2 = np.empty((n_comp, m2, q, q))
        nf = np.empty((n_comp, n_max))
        nc = np.empty((n_comp, n_max))
        beta1 = np.empty((max(m1, 2), q))
        beta2 = np.empty((m2, q, q))
        mf = np.empty((n_max, q))
        mc = np.empty((n_max, q))
        u = np.empty(q)
        llk = np.empty(n_comp)
        gc = np.int64(c) if want_grad else np.int64(0)
        for s in range(c * n_seq // n_chunks, (c + 1) * n_seq // n_chunks):
            length = lengths[s]
            x = states[s]
            obs = observed[s]
            hole = holes[s]
            for k in range(n_comp):
                _site_table(pw[k], pshift[k], tw[k], tshift[k], rows[s], length, f[k], fsh[k])
                if indep:
                    llk[k] = _independent_log_likelihood(f[k], length, x, obs, nf[k])
                    ll_out[s, k] = llk[k]
                    continue
                base = (length - 1) * cshift[k]
                if two:
                    base += (length - 2) * j2shift[k]
                log_z = base
                for i in range(length):
                    log_z += fsh[k, i]
                if two:
                    log_z += _forward2(f[k], length, wc[k], g2[k], x, obs, False, af2[k], nf[k])
                else:
                    log_z += _forward1(f[k], length, wc[k], kind, g[k], x, obs, False, af[k], nf[k])
                if hole:
                    lc = base
                    for i in range(length):
                        lc += fsh[k, i]
                    if two:
                        lc += _forward2(f[k], length, wc[k], g2[k], x, obs, True, ac2[k], nc[k])
                    else:
                        lc += _forward1(f[k], length, wc[k], kind, g[k], x, obs, True, ac[k], nc[k])
                else:
                    lc = base + _observed_log_weight(f[k], fsh[k], length, x, wc[k], kind, g[k], g2[k], max_range)
                llk[k] = lc - log_z
                ll_out[s, k] = llk[k]
            top = -np.inf
            for k in range(n_comp):
                top = max(top, log_pi[k] + llk[k])
            acc = 0.0
            for k in range(n_comp):
                acc += np.exp(log_pi[k] + llk[k] - top)
            tot = top + np.log(acc)
            c_total[c] += seq_weight[s] * tot
            if not want_grad:
                continue
            for k in range(n_comp):
                om = seq_weight[s] * np.exp(log_pi[k] + llk[k] - tot)
                if om == 0.0:
                    continue
                if indep:  # data minus model moments at the observed sites (zero at hidden ones)
                    for i in range(length):
                        if not obs[i]:
                            continue
                        r = rows[s, i]
                        inv = om / nf[k, i]
                        for a in range(q):
                            d = -f[k, i, a] * inv
                            if a == x[i]:
                                d += om
                            c_pos[gc, k, i, a] += d
                            c_tok[gc, k, r, a] += d
                    continue
                if not two and not hole:  # the common case, fused: no stored backward messages
                    _backward1_observed(f[k], length, wc[k], kind, g[k], x, rows[s], af[k], nf[k], beta1[0],
                                        beta1[1], u, om, c_pos[gc, k], c_tok[gc, k], c_pair[gc, k])
                    continue
                # model moments (free chain), subtracted
                if two:
                    c_j2[gc, k] += _backward2(f[k], length, wc[k], g2[k], x, obs, False, af2[k], nf[k], beta2, mf,
                                              c_pair[gc, k], -om)
                else:
                    _backward1(f[k], length, wc[k], kind, g[k], x, obs, False, af[k], nf[k], beta1, u, mf,
                               c_pair[gc, k], -om)
                # data moments: posterior of the clamped chain, or the observed configuration
                if hole:
                    if two:
                        c_j2[gc, k] += _backward2(f[k], length, wc[k], g2[k], x, obs, True, ac2[k], nc[k], beta2,
                                                  mc, c_pair[gc, k], om)
                    else:
                        _backward1(f[k], length, wc[k], kind, g[k], x, obs, True, ac[k], nc[k], beta1, u, mc,
                                   c_pair[gc, k], om)
                else:
                    for i in range(length):
                        for a in range(q):
                            mc[i, a] = 0.0
                        mc[i, x[i]] = 1.0
                    for i in range(length - 1):
                        # full matrix (or pair states), else the Potts diagonal; nothing without couplings
                        if (kind == KIND_FULL or two or x[i] == x[i + 1]) and (kind != KIND_NONE or two):
                            c_pair[gc, k, x[i], x[i + 1]] += om
                    if two:
                        for i in range(length - 2):
                            if x[i] == x[i + 2]:
                                c_j2[gc, k] += om
                for i in range(length):
                    r = rows[s, i]
                    for a in range(q):
                        d = om * (mc[i, a] - mf[i, a])
                        c_pos[gc, k, i, a] += d
                        c_tok[gc, k, r, a] += d
    total = 0.0
    for c in range(n_chunks):
        total += c_total[c]
    if want_grad:
        g_pos[:] = 0.0
        g_tok[:] = 0.0
        g_pair[:] = 0.0
        g_j2[:] = 0.0
        for c in range(n_chunks):
            g_pos += c_pos[c]
            g_tok += c_tok[c]
            g_pair += c_pair[c]
            g_j2 += c_j2[c]
    return total
