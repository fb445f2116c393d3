"""Numba kernels of the model's same-state correlations (private; see :mod:`ising_moe.fit.conditional.goodness`).

For every sequence's chain (and mixture component), ``P(s_i = s_{i+r})`` is propagated exactly from
each site with the chain's transition matrices (pair states at range 2) until the conditional
distributions given ``s_i`` agree to a tolerance in total variation: beyond, the connected part is
below the tolerance. Fixed chunks over sequences (thread-count independent).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ..._numba import njit
from ._message_kernels import (
    KIND_FULL,
    _backward1,
    _backward2,
    _forward1,
    _forward2,
    _site_table,
)


@njit
def _transitions1(f, length, wc, kind, g, beta, norms, trans):
    """Transition matrices ``M_i(a, b) = P(s_{i+1} = b | s_i = a)`` of the free chain, ``i < length - 1``."""
    q = f.shape[1]
    for i in range(length - 1):
        for a in range(q):
            s = 0.0
            for b in range(q):
                if kind == KIND_FULL:
                    w = wc[a, b]
                else:
                    w = 1.0 + g if a == b else 1.0
                v = w * f[i + 1, b] * beta[i + 1, b] / norms[i + 1]
                trans[i, a, b] = v
                s += v
            for b in range(q):
                trans[i, a, b] /= s


@njit
def _spread(cond, q, width, mean):
    """Bound on the largest total-variation distance between the conditional distributions
    ``cond[a] / sum`` (``2 max_a TV(cond_a, mixture)``: ``O(q width)`` instead of ``O(q^2 width)``)."""
    total = 0.0
    for t in range(width):
        mean[t] = 0.0
    for a in range(q):
        for t in range(width):
            mean[t] += cond[a, t]
            total += cond[a, t]
    worst = 0.0
    for a in range(q):
        sa = 0.0
        for t in range(width):
            sa += cond[a, t]
        if sa == 0.0:
            continue
        d = 0.0
        for t in range(width):
            d += abs(cond[a, t] / sa - mean[t] / total)
        worst = max(worst, d)
    return worst


@njit
def _same_state_joint1(marg, trans, i, length, max_distance, tol, out, cond, nxt, mean):
    """``out[r] = P(s_i = s_{i+r})`` for ``r = 1..`` until the conditionals given ``s_i`` agree to
    ``tol`` (total variation; the connected part is then below ``tol``): returns the last ``r`` done."""
    q = marg.shape[1]
    cond[:] = 0.0
    for a in range(q):
        cond[a, a] = marg[i, a]
    last = 0
    for r in range(1, max_distance + 1):
        j = i + r
        if j >= length:
            break
        tm = trans[j - 1]
        for a in range(q):
            for b in range(q):
                nxt[a, b] = 0.0
            for c in range(q):
                v = cond[a, c]
                for b in range(q):  # contiguous innermost loop (vectorised)
                    nxt[a, b] += v * tm[c, b]
        tr = 0.0
        for a in range(q):
            for b in range(q):
                cond[a, b] = nxt[a, b]
            tr += cond[a, a]
        out[r] = tr
        last = r
        if _spread(cond, q, q, mean) < tol:
            break
    return last


@njit
def _same_state_joint2(f, length, wc, g2, alpha, beta, norms, marg, i, max_distance, tol, out, cond, nxt, kyz, scaled,
                       mean):
    """Range-2 version of :func:`_same_state_joint1`: the conditionals given ``s_i`` live on pair
    states ``(s_{j-1}, s_j)`` and move with the pair-state transitions of the free chain."""
    q = f.shape[1]
    # cond[a, (x, y)]: P(s_i = a, s_{j-1} = x, s_j = y), starting at j = max(i, 1)
    cond[:] = 0.0
    j = max(i, 1)
    s = 0.0
    for x in range(q):
        for y in range(q):
            s += alpha[j, x, y] * beta[j, x, y]
    for x in range(q):
        for y in range(q):
            p = alpha[j, x, y] * beta[j, x, y] / s
            cond[x if i == 0 else y, x * q + y] += p
    last = 0
    if i == 0:  # j = 1 is already the pair state (s_0, s_1)
        tr = 0.0
        for a in range(q):
            tr += cond[a, a * q + a]
        if max_distance >= 1:
            out[1] = tr
            last = 1
        if _spread(cond, q, q * q, mean) < tol:
            return last
    for jj in range(j + 1, length):
        r = jj - i
        if r > max_distance:
            break
        # T((x, y) -> (y, z)) = K(y, z) (1 + g2 delta_xz) / beta_{j-1}(x, y): with c = cond / beta and
        # S(a, y) = sum_x c(a, x, y), nxt(a, y, z) = K(y, z) (S(a, y) + g2 c(a, z, y)): O(q^3) per step
        inv = 1.0 / norms[jj]
        for y in range(q):
            for z in range(q):
                kyz[y, z] = wc[y, z] * f[jj, z] * beta[jj, y, z] * inv
        for a in range(q):
            for x in range(q):
                for y in range(q):
                    scaled[x, y] = cond[a, x * q + y] / beta[jj - 1, x, y]
            for y in range(q):
                acc = 0.0
                for x in range(q):
                    acc += scaled[x, y]
                for z in range(q):
                    nxt[a, y * q + z] = kyz[y, z] * (acc + g2 * scaled[z, y])
        tr = 0.0
        for a in range(q):
            for t in range(q * q):
                cond[a, t] = nxt[a, t]
            for x in range(q):
                tr += cond[a, x * q + a]
        out[r] = tr
        last = r
        if _spread(cond, q, q * q, mean) < tol:
            break
    return last


@njit(parallel=True)
def model_pair_sums(observed, rows, lengths, pw, pshift, tw, tshift, wc, cshift, g, g2, j2shift, kind, max_range,
                    pi, max_distance, tol, n_chunks, a_out, s1_out, s2_out):
    """Sums over sequences behind the model's expectation of the empirical ``C(r)`` estimator.

    For every sequence ``s`` (a chain with its own token fields; a mixture is averaged over its
    components with weights ``pi``) and valid sites ``i``, ``j = i + r`` (``observed``):

    - ``a_out[i] += P_s(s_i = .)`` over sequences valid at ``i``;
    - ``s1_out[i, r] += P_s(s_i = s_j)`` over sequences valid at both;
    - ``s2_out[i, r] += sum_a P_s(s_i = a) P_s(s_j = a)`` over the same.

    ``P_s(s_i = s_j)`` is propagated exactly until the conditionals given ``s_i`` agree to ``tol``
    in total variation; beyond, the connected part (bounded by ``tol``) is dropped. Outputs are
    overwritten.
    """
    n_seq, n_max = observed.shape
    n_comp, _, q = pw.shape
    n_r = max_distance + 1
    two = max_range == 2
    c_a = np.zeros((n_chunks, n_max, q))
    c_s1 = np.zeros((n_chunks, n_max, n_r))
    c_s2 = np.zeros((n_chunks, n_max, n_r))
    for c in prange(n_chunks):
        f = np.empty((n_max, q))
        fsh = np.empty(n_max)
        m1 = n_max if not two else 1
        m2 = n_max if two else 1
        a1 = np.empty((m1, q))
        b1 = np.empty((m1, q))
        a2 = np.empty((m2, q, q))
        b2 = np.empty((m2, q, q))
        norms = np.empty(n_max)
        trans = np.empty((m1, q, q))
        u = np.empty(q)
        marg = np.empty((n_max, q))
        mix = np.empty((n_max, q))
        dummy = np.zeros((q, q))
        joint = np.empty(n_r)
        x = np.zeros(n_max, dtype=np.int64)
        cond1, nxt1 = np.empty((q, q)), np.empty((q, q))
        cond2, nxt2 = np.empty((q, q * q)), np.empty((q, q * q))
        kyz, scaled = np.empty((q, q)), np.empty((q, q))
        mean = np.empty(q * q)
        for s in range(c * n_seq // n_chunks, (c + 1) * n_seq // n_chunks):
            length = lengths[s]
            obs = observed[s]
            mix[:length] = 0.0
            for k in range(n_comp):
                _site_table(pw[k], pshift[k], tw[k], tshift[k], rows[s], length, f, fsh)
                if two:
                    _forward2(f, length, wc[k], g2[k], x, obs, False, a2, norms)
                    _backward2(f, length, wc[k], g2[k], x, obs, False, a2, norms, b2, marg, dummy, 0.0)
                else:
                    _forward1(f, length, wc[k], kind, g[k], x, obs, False, a1, norms)
                    _backward1(f, length, wc[k], kind, g[k], x, obs, False, a1, norms, b1, u, marg, dummy, 0.0)
                    _transitions1(f, length, wc[k], kind, g[k], b1, norms, trans)
                for i in range(length):
                    for a in range(q):
                        mix[i, a] += pi[k] * marg[i, a]
                for i in range(length):
                    if not obs[i]:
                        continue
                    c_s1[c, i, 0] += pi[k]
                    if two:
                        last = _same_state_joint2(f, length, wc[k], g2[k], a2, b2, norms, marg, i, max_distance,
                                                  tol, joint, cond2, nxt2, kyz, scaled, mean)
                    else:
                        last = _same_state_joint1(marg, trans, i, length, max_distance, tol, joint, cond1, nxt1, mean)
                    for r in range(1, n_r):
                        j = i + r
                        if j >= length:
                            break
                        if not obs[j]:
                            continue
                        if r <= last:
                            c_s1[c, i, r] += pi[k] * joint[r]
                        else:
                            dot = 0.0
                            for a in range(q):
                                dot += marg[i, a] * marg[j, a]
                            c_s1[c, i, r] += pi[k] * dot
            for i in range(length):
                if not obs[i]:
                    continue
                for a in range(q):
                    c_a[c, i, a] += mix[i, a]
                for r in range(n_r):
                    j = i + r
                    if j >= length:
                        break
                    if not obs[j]:
                        continue
                    dot = 0.0
                    for a in range(q):
                        dot += mix[i, a] * mix[j, a]
                    c_s2[c, i, r] += dot
    a_out[:] = 0.0
    s1_out[:] = 0.0
    s2_out[:] = 0.0
    for c in range(n_chunks):
        a_out += c_a[c]
        s1_out += c_s1[c]
        s2_out += c_s2[c]
