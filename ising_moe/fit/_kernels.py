"""Numba kernels of the fitters (private; see :mod:`ising_moe.fit`).

The central kernel, :func:`chain_moments`, is an exact forward-backward pass of a chain with
couplings up to range ``R`` in which some sites are *clamped* to an observed state. It works on
windows of the last ``R`` sites: a window's states are the product of the allowed states of its
sites (``q`` for a hidden site, one for an observed site), so a fully observed stretch costs
``O(1)`` per site and a hidden stretch ``O(q^R)``. With every site hidden it gives the model's
``log Z`` and moments; with the observed sites clamped it gives ``log P(observed, hidden)`` summed
over the hidden ones and their posterior moments: masked tokens are marginalised exactly.

Conventions: ``log_fields`` (L, q) are the fields of the chain's sites; ``log_couplings``
(R, n_c, q, q) hold ``J_r`` for pairs ``(j, j + r)``, per left site ``j`` when ``n_c > 1``.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._numba import njit


@njit(inline="always")
def _bond(log_couplings, j):
    return j if log_couplings.shape[1] > 1 else 0


@njit(inline="always")
def _weight(wf, wc, i, a, cur, prev_n):
    """Weight of state ``a`` at site ``i`` given the states ``cur`` of the ``prev_n`` sites before it."""
    w = wf[i, a]
    for r in range(1, prev_n + 1):
        w *= wc[r - 1, _bond(wc, i - r), cur[r - 1], a]
    return w


@njit
def _decode(idx, i, n_dig, allowed, radix, states):
    """States of sites ``i - n_dig + 1 .. i`` of window index ``idx`` (last site least significant)."""
    for t in range(n_dig):
        site = i - t
        if site < 0:
            states[t] = -1
            continue
        r = radix[site]
        digit = idx % r
        idx //= r
        states[t] = digit if allowed[site] < 0 else allowed[site]


@njit
def weights(log_fields, log_couplings):
    """Exponential tables of a parameter set (computed once, shared by every sequence).

    Returns ``wf = exp(h - max_a h)`` (L, q), its shifts (L,), ``wc = exp(J - max J)`` (R, n_c, q, q)
    and its shifts (R, n_c).
    """
    n, q = log_fields.shape
    wf = np.empty((n, q))
    fshift = np.empty(n)
    for i in range(n):
        m = np.max(log_fields[i])
        fshift[i] = m
        for a in range(q):
            wf[i, a] = np.exp(log_fields[i, a] - m)
    big_r, n_c = log_couplings.shape[0], log_couplings.shape[1]
    wc = np.empty(log_couplings.shape)
    cshift = np.empty((big_r, n_c))
    for r in range(big_r):
        for c in range(n_c):
            m = np.max(log_couplings[r, c])
            cshift[r, c] = m
            for a in range(q):
                for b in range(q):
                    wc[r, c, a, b] = np.exp(log_couplings[r, c, a, b] - m)
    return wf, fshift, wc, cshift


@njit
def chain_moments(wf, fshift, wc, cshift, allowed, weight, site_out, pair_out, accumulate):
    """Exact ``log Z`` of a chain with clamped sites, and (optionally) its moments.

    Parameters
    ----------
    wf, fshift, wc, cshift : ndarray
        Tables of :func:`weights` for the chain's ``L`` sites (``wf[:L]``, ``fshift[:L]``).
    allowed : ndarray of int, shape (L,)
        ``-1`` for a hidden site, else the observed state.
    weight : float
        Multiplier of the accumulated moments.
    site_out : ndarray of shape (>= L, q)
        ``+= weight P(s_i = a)``.
    pair_out : ndarray of shape (R, n_c, q, q)
        ``+= weight P(s_j = a, s_{j+r} = b)`` at ``[r - 1, bond(j)]``.
    accumulate : bool
        Compute the moments (else only ``log Z``).

    Returns
    -------
    float
        ``log sum_{hidden} exp(sum_i h_i(s_i) + sum_{r, j} J_r(s_j, s_{j+r}))``.
    """
    n = allowed.shape[0]
    big_r = wc.shape[0]
    radix = np.empty(n, dtype=np.int64)
    q = wf.shape[1]
    for i in range(n):
        radix[i] = q if allowed[i] < 0 else 1
    size = np.empty(n, dtype=np.int64)
    offset = np.empty(n + 1, dtype=np.int64)
    offset[0] = 0
    for i in range(n):
        s = 1
        for t in range(big_r):
            if i - t >= 0:
                s *= radix[i - t]
        size[i] = s
        offset[i + 1] = offset[i] + s
    alpha = np.zeros(offset[n])
    step = np.zeros(n)  # log shift of each step's weights
    cur = np.empty(big_r, dtype=np.int64)
    # ---- site 0
    norm = 0.0
    for d in range(radix[0]):
        a = d if allowed[0] < 0 else allowed[0]
        alpha[d] = wf[0, a]
        norm += wf[0, a]
    for d in range(radix[0]):
        alpha[d] /= norm
    log_z = fshift[0] + np.log(norm)
    # ---- forward
    for i in range(1, n):
        prev_n = min(i, big_r)
        m = fshift[i]
        for r in range(1, prev_n + 1):
            m += cshift[r - 1, _bond(wc, i - r)]
        step[i] = m
        drop = radix[i - big_r] if i - big_r >= 0 else 1
        keep = size[i - 1] // drop
        base = offset[i]
        for k in range(size[i]):
            alpha[base + k] = 0.0
        for idx in range(size[i - 1]):
            x = alpha[offset[i - 1] + idx]
            if x == 0.0:
                continue
            _decode(idx, i - 1, prev_n, allowed, radix, cur)
            rest = idx % keep
            for d in range(radix[i]):
                a = d if allowed[i] < 0 else allowed[i]
                w = _weight(wf, wc, i, a, cur, prev_n)
                alpha[base + rest * radix[i] + d] += x * w
        norm = 0.0
        for k in range(size[i]):
            norm += alpha[base + k]
        for k in range(size[i]):
            alpha[base + k] /= norm
        log_z += m + np.log(norm)
    if not accumulate:
        return log_z
    # ---- backward with posteriors
    beta = np.ones(size[n - 1])
    for i in range(n - 1, 0, -1):
        prev_n = min(i, big_r)
        drop = radix[i - big_r] if i - big_r >= 0 else 1
        keep = size[i - 1] // drop
        new_beta = np.zeros(size[i - 1])
        total = 0.0
        for idx in range(size[i - 1]):
            _decode(idx, i - 1, prev_n, allowed, radix, cur)
            rest = idx % keep
            acc = 0.0
            for d in range(radix[i]):
                a = d if allowed[i] < 0 else allowed[i]
                w = _weight(wf, wc, i, a, cur, prev_n)
                acc += w * beta[rest * radix[i] + d]
            new_beta[idx] = acc
            total += alpha[offset[i - 1] + idx] * acc
        for idx in range(size[i - 1]):
            x = alpha[offset[i - 1] + idx]
            if x == 0.0:
                continue
            _decode(idx, i - 1, prev_n, allowed, radix, cur)
            rest = idx % keep
            scale = weight * x / total
            for d in range(radix[i]):
                a = d if allowed[i] < 0 else allowed[i]
                w = _weight(wf, wc, i, a, cur, prev_n)
                p = scale * w * beta[rest * radix[i] + d]
                if p == 0.0:
                    continue
                site_out[i, a] += p
                for r in range(1, prev_n + 1):
                    pair_out[r - 1, _bond(wc, i - r), cur[r - 1], a] += p
        s = 0.0
        for idx in range(size[i - 1]):
            s += new_beta[idx]
        for idx in range(size[i - 1]):
            new_beta[idx] /= s
        beta = new_beta
    norm = 0.0
    for d in range(radix[0]):
        norm += alpha[d] * beta[d]
    for d in range(radix[0]):
        a = d if allowed[0] < 0 else allowed[0]
        site_out[0, a] += weight * alpha[d] * beta[d] / norm
    return log_z


@njit(parallel=True)
def data_moments(states, allowed_mask, lengths, rows, wf, fshift, wc, cshift, n_chunks, site_out, pair_out):
    """Sum over sequences ``rows`` of clamped ``log Z`` (observed data, hidden sites summed) and of
    their posterior moments. ``allowed_mask[s, i]`` False marks a hidden (masked) site.

    The rows are split into ``n_chunks`` fixed chunks (``prange``), each with its own accumulators,
    summed in chunk order: the result does not depend on the number of threads.
    """
    n_rows = rows.shape[0]
    n_max = states.shape[1]
    chunk_site = np.zeros((n_chunks,) + site_out.shape)
    chunk_pair = np.zeros((n_chunks,) + pair_out.shape)
    chunk_total = np.zeros(n_chunks)
    for c in prange(n_chunks):
        allowed = np.empty(n_max, dtype=np.int64)
        for k in range(c * n_rows // n_chunks, (c + 1) * n_rows // n_chunks):
            s = rows[k]
            L = lengths[s]
            for i in range(L):
                allowed[i] = states[s, i] if allowed_mask[s, i] else -1
            chunk_total[c] += chain_moments(wf, fshift, wc, cshift, allowed[:L], 1.0, chunk_site[c],
                                            chunk_pair[c], True)
    total = 0.0
    for c in range(n_chunks):
        total += chunk_total[c]
        site_out += chunk_site[c]
        pair_out += chunk_pair[c]
    return total


@njit(parallel=True)
def data_log_likelihood(states, allowed_mask, lengths, rows, wf, fshift, wc, cshift, out):
    """Clamped ``log Z`` of each sequence in ``rows`` into ``out`` (``prange`` over sequences)."""
    n_max = states.shape[1]
    for k in prange(rows.shape[0]):
        allowed = np.empty(n_max, dtype=np.int64)
        dummy_site = np.zeros((1, 1))
        dummy_pair = np.zeros((1, 1, 1, 1))
        s = rows[k]
        L = lengths[s]
        for i in range(L):
            allowed[i] = states[s, i] if allowed_mask[s, i] else -1
        out[k] = chain_moments(wf, fshift, wc, cshift, allowed[:L], 1.0, dummy_site, dummy_pair, False)


@njit
def pseudo_likelihood(states, valid, lengths, log_fields, log_couplings, site_out, pair_out):
    """Pseudo-log-likelihood ``sum log P(s_i | neighbours)`` over sites whose neighbours within range
    are all valid, and its gradient: ``site_out``/``pair_out`` receive ``data - conditional`` moments."""
    n_seq, n = states.shape
    q = log_fields.shape[1]
    big_r = log_couplings.shape[0]
    logits = np.empty(q)
    total = 0.0
    for s in range(n_seq):
        L = lengths[s]
        for i in range(L):
            if not valid[s, i]:
                continue
            ok = True
            for r in range(1, big_r + 1):
                if (i - r >= 0 and not valid[s, i - r]) or (i + r < L and not valid[s, i + r]):
                    ok = False
            if not ok:
                continue
            m = -np.inf
            for a in range(q):
                v = log_fields[i, a]
                for r in range(1, big_r + 1):
                    if i - r >= 0:
                        v += log_couplings[r - 1, _bond(log_couplings, i - r), states[s, i - r], a]
                    if i + r < L:
                        v += log_couplings[r - 1, _bond(log_couplings, i), a, states[s, i + r]]
                logits[a] = v
                m = max(m, v)
            norm = 0.0
            for a in range(q):
                logits[a] = np.exp(logits[a] - m)
                norm += logits[a]
            x = states[s, i]
            total += np.log(logits[x] / norm)
            for a in range(q):
                p = logits[a] / norm
                g = (1.0 if a == x else 0.0) - p
                site_out[i, a] += g
                for r in range(1, big_r + 1):
                    if i - r >= 0:
                        pair_out[r - 1, _bond(log_couplings, i - r), states[s, i - r], a] += g
                    if i + r < L:
                        pair_out[r - 1, _bond(log_couplings, i), a, states[s, i + r]] += g
    return total


@njit(parallel=True)
def nn_run_moments(runs, wf, fshift, wc, cshift, n_chunks, site_out, pair_out):
    """Nearest-neighbour data term of hidden runs: ``sum log W_run`` and posterior moments.

    A run ``runs[k] = (first, last, left_state, right_state)`` is a maximal stretch of hidden sites of
    one sequence, with the observed states of its neighbours (-1: the chain ends there).
    ``W_run`` sums ``exp`` of the run's fields and of every bond touching it, so that
    ``log P(observed) = (observed fields and bonds) + sum_runs log W_run - log Z``. Fixed chunks,
    summed in order (thread-count independent).
    """
    n_runs = runs.shape[0]
    q = wf.shape[1]
    chunk_site = np.zeros((n_chunks,) + site_out.shape)
    chunk_pair = np.zeros((n_chunks,) + pair_out.shape)
    chunk_total = np.zeros(n_chunks)
    max_len = 1
    for k in range(n_runs):
        max_len = max(max_len, runs[k, 1] - runs[k, 0] + 1)
    for c in prange(n_chunks):
        alpha = np.empty((max_len, q))
        beta = np.empty((max_len, q))
        unnorm = np.empty((max_len, q))
        tmp = np.empty(q)
        for k in range(c * n_runs // n_chunks, (c + 1) * n_runs // n_chunks):
            a0, b0, xl, xr = runs[k, 0], runs[k, 1], runs[k, 2], runs[k, 3]
            length = b0 - a0 + 1
            log_w = 0.0
            # forward
            norm = 0.0
            for a in range(q):
                v = wf[a0, a]
                if xl >= 0:
                    v *= wc[0, _bond(wc, a0 - 1), xl, a]
                alpha[0, a] = v
                norm += v
            log_w += fshift[a0] + np.log(norm) + (cshift[0, _bond(wc, a0 - 1)] if xl >= 0 else 0.0)
            for a in range(q):
                alpha[0, a] /= norm
            for t in range(1, length):
                i = a0 + t
                w = wc[0, _bond(wc, i - 1)]
                for b in range(q):
                    tmp[b] = 0.0
                for a in range(q):
                    x = alpha[t - 1, a]
                    for b in range(q):
                        tmp[b] += x * w[a, b]
                norm = 0.0
                for b in range(q):
                    tmp[b] *= wf[i, b]
                    norm += tmp[b]
                for b in range(q):
                    alpha[t, b] = tmp[b] / norm
                log_w += fshift[i] + cshift[0, _bond(wc, i - 1)] + np.log(norm)
            # closing bond to the right neighbour, and backward messages
            end = 0.0
            for a in range(q):
                beta[length - 1, a] = wc[0, _bond(wc, b0), a, xr] if xr >= 0 else 1.0
                end += alpha[length - 1, a] * beta[length - 1, a]
            log_w += np.log(end) + (cshift[0, _bond(wc, b0)] if xr >= 0 else 0.0)
            chunk_total[c] += log_w
            # backward messages; unnorm[t] keeps sum_b W_t(a, b) F_{t+1}(b) beta_{t+1}(b) before scaling
            for t in range(length - 2, -1, -1):
                i = a0 + t
                w = wc[0, _bond(wc, i)]
                norm = 0.0
                for a in range(q):
                    acc = 0.0
                    for b in range(q):
                        acc += w[a, b] * wf[i + 1, b] * beta[t + 1, b]
                    unnorm[t, a] = acc
                    norm += acc
                for a in range(q):
                    beta[t, a] = unnorm[t, a] / norm
            # posteriors of the run's sites, its inner bonds and its two boundary bonds
            for t in range(length):
                i = a0 + t
                norm = 0.0
                for a in range(q):
                    tmp[a] = alpha[t, a] * beta[t, a]
                    norm += tmp[a]
                for a in range(q):
                    p = tmp[a] / norm
                    chunk_site[c, i, a] += p
                    if t == 0 and xl >= 0:
                        chunk_pair[c, 0, _bond(wc, i - 1), xl, a] += p
                    if t == length - 1 and xr >= 0:
                        chunk_pair[c, 0, _bond(wc, i), a, xr] += p
                if t < length - 1:
                    w = wc[0, _bond(wc, i)]
                    z = 0.0
                    for a in range(q):
                        z += alpha[t, a] * unnorm[t, a]
                    for b in range(q):
                        tmp[b] = wf[i + 1, b] * beta[t + 1, b] / z
                    for a in range(q):
                        x = alpha[t, a]
                        for b in range(q):
                            chunk_pair[c, 0, _bond(wc, i), a, b] += x * w[a, b] * tmp[b]
    total = 0.0
    for c in range(n_chunks):
        total += chunk_total[c]
        site_out += chunk_site[c]
        pair_out += chunk_pair[c]
    return total
